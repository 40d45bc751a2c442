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
            let idx = ins[1].to_kind(Kind::Int64);
            let dims = x.size();
            let k = *idx.size().last().unwrap_or(&0) as usize;
            if k == 0 || k > dims.len() {
                bail!(
                    "{}: indices of shape {:?} for data {dims:?}",
                    at(n),
                    idx.size()
                );
            }
            let rows = idx.reshape([-1, k as i64]);
            let mut lin = rows.select(1, 0);
            for (j, d) in dims.iter().enumerate().take(k).skip(1) {
                lin = lin * *d + rows.select(1, j as i64);
            }
            let lead: i64 = dims[..k].iter().product();
            let mut out_dims = idx.size()[..idx.dim() - 1].to_vec();
            out_dims.extend_from_slice(&dims[k..]);
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
            let (idx, upd) = (ins[1].to_kind(Kind::Int64), &ins[2]);
            let dims = x.size();
            let k = *idx.size().last().unwrap_or(&0) as usize;
            if k == 0 || k > dims.len() {
                bail!(
                    "{}: indices of shape {:?} for data {dims:?}",
                    at(n),
                    idx.size()
                );
            }
            let rows = idx.reshape([-1, k as i64]);
            let mut lin = rows.select(1, 0);
            for (j, d) in dims.iter().enumerate().take(k).skip(1) {
                lin = lin * *d + rows.select(1, j as i64);
            }
            let lead: i64 = dims[..k].iter().product();
            let rest: i64 = dims[k..].iter().product();
            let out = x.reshape([lead, rest]).copy();
            let upd = upd.to_kind(x.kind()).reshape([rows.size()[0], rest]);
            out.index_copy(0, &lin, &upd).reshape(dims.as_slice())
        }
        op => bail!("{}: cannot fold {op}", at(n)),
    })
}
