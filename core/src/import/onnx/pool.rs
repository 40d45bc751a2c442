//! MaxPool, AveragePool, GlobalAveragePool and ReduceMean over the map.

use super::*;

impl Reader<'_> {
    pub(super) fn pool(&mut self, n: &NodeProto) -> Result<()> {
        let v = self.nchw(n, 0)?;
        let Shape::Maps { c, side } = v.shape else {
            bail!("{}: its input is not a map", at(n));
        };
        let (w, ceil) = window(n, side, "pool")?;
        let l = if n.op_type == "MaxPool" {
            if n.output.len() > 1 && !n.output[1].is_empty() {
                bail!("{}: MaxPool's indices output is not supported", at(n));
            }
            Layer::max_pool(w, ceil)
        } else {
            Layer::AvgPool {
                k: w.k,
                stride: w.stride,
                pad: w.pad,
                ceil_mode: ceil,
                count_include_pad: attr_i(n, "count_include_pad", 0) == 1,
            }
        };
        let i = self.push(l, &[&v]);
        self.set(
            &n.output[0],
            i,
            Shape::Maps {
                c,
                side: w.out_size(side, ceil),
            },
        );
        Ok(())
    }

    /// GlobalAveragePool, or ReduceMean over H and W (kept or not).
    pub(super) fn global_pool(&mut self, n: &NodeProto) -> Result<()> {
        let v = self.value(n, 0)?;
        if v.nhwc && n.op_type != "ReduceMean" {
            bail!("{}: reads channels-last maps", at(n));
        }
        let Shape::Maps { c, .. } = v.shape else {
            bail!("{}: its input is not a map", at(n));
        };
        let mut keep = true;
        if n.op_type == "ReduceMean" {
            let axes = match n.input.get(1).filter(|s| !s.is_empty()) {
                Some(a) => Vec::<i64>::try_from(&self.get(a, n)?.to_kind(Kind::Int64))?,
                // No axes: every axis (ONNX's default), refused below.
                None => attr_ints(n, "axes").unwrap_or_else(|| vec![0, 1, 2, 3]),
            };
            let mut axes: Vec<i64> = axes
                .iter()
                .map(|&a| if a < 0 { a + 4 } else { a })
                .collect();
            axes.sort();
            let spatial: &[i64] = if v.nhwc { &[1, 2] } else { &[2, 3] };
            if axes != spatial {
                bail!(
                    "{}: only a mean over height and width is supported (axes {axes:?})",
                    at(n)
                );
            }
            keep = attr_i(n, "keepdims", 1) == 1;
        }
        let mut i = self.push(Layer::AdaptiveAvgPool { out: 1 }, &[&v]);
        let mut shape = Shape::Maps { c, side: 1 };
        if !keep {
            let pooled = Value {
                node: Some(i),
                shape,
                nhwc: v.nhwc,
                hwc: None,
                grouped: None,
                view: None,
            };
            i = self.push(Layer::Flatten, &[&pooled]);
            self.flattened.insert(i, pooled);
            shape = Shape::Flat(c);
        }
        self.set_layout(&n.output[0], i, shape, v.nhwc && keep);
        Ok(())
    }
}
