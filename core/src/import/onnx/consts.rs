//! Constant folding of the ops exporters build shapes, masks and tables
//! with (beside the shape arithmetic `reshape::fold` reads): Expand,
//! ConstantOfShape, Equal, Where, Not, Sqrt, Pow, Mod, Range, ScatterND
//! (Swin's shift mask), and Swin V2's continuous position bias, an MLP on
//! constant coordinates (MatMul, Relu, Sigmoid, Exp, Clip, GatherND).

use super::*;

/// Evaluate `n` on constants (`reshape::fold`'s other ops).
pub(super) fn fold(n: &NodeProto, ins: &[Tensor]) -> Result<Tensor> {
    let x = &ins[0];
    let ints = |k: usize, name: &str| -> Result<Vec<i64>> {
        match ins.get(k) {
            Some(t) => crate::net::values(t, name),
            None => attr_ints(n, name).ok_or_else(|| anyhow!("{}: no {name}", at(n))),
        }
    };
    Ok(match n.op_type.as_str() {
        "Expand" => {
            let shape = ints(1, "shape")?;
            // Broadcast both ways, as ONNX's Expand does.
            let ones = Tensor::ones(shape.as_slice(), (x.kind(), tch::Device::Cpu));
            x * ones
        }
        "ConstantOfShape" => {
            let shape = crate::net::values(x, "shape")?;
            match attr(n, "value").and_then(|a| a.t.as_ref()) {
                Some(t) => {
                    let v = super::proto::tensor(t, std::path::Path::new("."))?;
                    v.reshape([-1]).expand(shape.as_slice(), false).contiguous()
                }
                None => Tensor::zeros(shape.as_slice(), (Kind::Float, tch::Device::Cpu)),
            }
        }
        "Equal" => x.eq_tensor(&ins[1]).to_kind(Kind::Int64),
        "Where" => ins[1].where_self(&x.to_kind(Kind::Bool), &ins[2]),
        "Sqrt" => x.to_kind(Kind::Double).sqrt().to_kind(Kind::Float),
        "Mod" => x.remainder_tensor(&ins[1]),
        "Not" => x.eq(0).to_kind(Kind::Int64),
        // Swin V2's continuous position bias: an MLP on constant coordinates.
        "Relu" => x.relu(),
        "Sigmoid" => x.to_kind(Kind::Float).sigmoid(),
        "Exp" => x.to_kind(Kind::Float).exp(),
        "MatMul" => x.to_kind(Kind::Float).matmul(&ins[1].to_kind(Kind::Float)),
        "Clip" => {
            // Optional inputs min and max (opset 11 on) or attributes.
            let mut rest = ins.iter().skip(1);
            let mut bound = |k: usize, name: &str| match n.input.get(k).filter(|s| !s.is_empty()) {
                Some(_) => rest
                    .next()
                    .map(|t| t.to_kind(Kind::Double).reshape([-1]).double_value(&[0])),
                None => attr(n, name).map(|a| a.f as f64),
            };
            let (lo, hi) = (bound(1, "min"), bound(2, "max"));
            let x = x.to_kind(Kind::Float);
            let x = match lo {
                Some(l) => x.clamp_min(l),
                None => x,
            };
            match hi {
                Some(h) => x.clamp_max(h),
                None => x,
            }
        }
        "GatherND" => {
            // data[indices[i]] over the first k axes (batch_dims 0).
            if attr_i(n, "batch_dims", 0) != 0 {
                bail!("{}: GatherND with batch_dims", at(n));
            }
            let (lin, k) = offsets(n, &ins[1], &x.size())?;
            let idx = ins[1].size();
            let mut out_dims = idx[..idx.len() - 1].to_vec();
            out_dims.extend_from_slice(&x.size()[k..]);
            let lead: i64 = x.size()[..k].iter().product();
            x.reshape([lead, -1])
                .index_select(0, &lin)
                .reshape(out_dims.as_slice())
        }
        "Pow" => x
            .to_kind(Kind::Double)
            .pow(&ins[1].to_kind(Kind::Double))
            .to_kind(Kind::Float),
        "Range" => {
            let v = |k: usize| {
                ins[k]
                    .to_kind(Kind::Double)
                    .reshape([-1])
                    .double_value(&[0])
            };
            let kind = if x.kind() == Kind::Float {
                Kind::Float
            } else {
                Kind::Int64
            };
            Tensor::arange_start_step(v(0), v(1), v(2), (Kind::Double, tch::Device::Cpu))
                .to_kind(kind)
        }
        "ScatterND" => {
            // data[indices[i]] = updates[i] over the first k axes.
            let dims = x.size();
            let (lin, k) = offsets(n, &ins[1], &dims)?;
            let lead: i64 = dims[..k].iter().product();
            let rest: i64 = dims[k..].iter().product();
            let upd = &ins[2];
            if upd.numel() as i64 != lin.numel() as i64 * rest {
                bail!(
                    "{}: updates of shape {:?} for {} rows of {rest}",
                    at(n),
                    upd.size(),
                    lin.numel()
                );
            }
            let out = x.reshape([lead, rest]).copy();
            let upd = upd.to_kind(x.kind()).reshape([lin.numel() as i64, rest]);
            out.index_copy(0, &lin, &upd).reshape(dims.as_slice())
        }
        op => bail!("{}: cannot fold {op}", at(n)),
    })
}

/// GatherND's and ScatterND's indices ([.., k]) as row offsets into data
/// of shape `dims` seen as [d0·…·d(k−1), rest], each index checked (a
/// negative one counts from the end, as ONNX allows); and k.
fn offsets(n: &NodeProto, indices: &Tensor, dims: &[i64]) -> Result<(Tensor, usize)> {
    let idx = indices.to_kind(Kind::Int64);
    let k = *idx.size().last().unwrap_or(&0) as usize;
    if idx.dim() == 0 || k == 0 || k > dims.len() {
        bail!(
            "{}: indices of shape {:?} for data {dims:?}",
            at(n),
            idx.size()
        );
    }
    let rows = idx.reshape([-1, k as i64]);
    let mut lin = Tensor::zeros([rows.size()[0]], (Kind::Int64, tch::Device::Cpu));
    for (j, &d) in dims.iter().enumerate().take(k) {
        let col = rows.select(1, j as i64);
        let col = col.where_self(&col.ge(0), &(&col + d));
        if col.numel() > 0 && (col.min().int64_value(&[]) < 0 || col.max().int64_value(&[]) >= d) {
            bail!("{}: an index outside axis {j} of {dims:?}", at(n));
        }
        lin = lin * d + col;
    }
    Ok((lin, k))
}
