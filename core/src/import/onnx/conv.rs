//! Conv (dilations and groups as given, SAME padding through a pad node) and Pad.

use super::*;

/// A square window from kernel_shape/strides/pads; asymmetric pads that add
/// one row/column at the end become ceil mode when that gives the same size.
pub(super) fn window(n: &NodeProto, side: i64, what: &str) -> Result<(Window, bool)> {
    window_with(
        n,
        side,
        what,
        attr_ints(n, "pads").unwrap_or(vec![0, 0, 0, 0]),
    )
}

/// [`window`] with the pads given (a conv whose asymmetric pads became a
/// Pad node before it reads none).
pub(super) fn window_with(
    n: &NodeProto,
    side: i64,
    what: &str,
    p: Vec<i64>,
) -> Result<(Window, bool)> {
    let k = attr_ints(n, "kernel_shape").ok_or_else(|| anyhow!("{}: no kernel_shape", at(n)))?;
    let s = attr_ints(n, "strides").unwrap_or(vec![1, 1]);
    let d = attr_ints(n, "dilations").unwrap_or(vec![1, 1]);
    if d.len() != 2 || d[0] != d[1] || d[0] < 1 || (d[0] != 1 && what != "conv") {
        bail!(
            "{}: dilations {d:?}: only equal dilations of convs are supported",
            at(n)
        );
    }
    if let Some(a) = attr(n, "auto_pad") {
        let v = String::from_utf8_lossy(&a.s).to_string();
        if v != "NOTSET" && v != "VALID" && !v.is_empty() {
            bail!(
                "{}: auto_pad {v} is not supported; export with explicit pads",
                at(n)
            );
        }
    }
    if k.len() != 2 || k[0] != k[1] || s.len() != 2 || s[0] != s[1] || p.len() != 4 {
        bail!(
            "{}: only square 2-d {what}s are supported (kernel {k:?}, strides {s:?})",
            at(n)
        );
    }
    if p[0] != p[1] || p[2] != p[3] {
        bail!("{}: pads {p:?} differ between height and width", at(n));
    }
    if k[0] < 1 || s[0] < 1 || p.iter().any(|&v| v < 0) {
        bail!(
            "{}: kernel {k:?} and strides {s:?} must be at least 1 and pads {p:?} at least 0",
            at(n)
        );
    }
    let k = [d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1];
    if side + p[0] + p[2] < k[0] {
        bail!(
            "{}: its {k:?} window is larger than its padded {side}x{side} input",
            at(n)
        );
    }
    let w = Window::new(k[0], s[0], p[0]);
    let ceil = attr_i(n, "ceil_mode", 0) == 1;
    if p[2] == p[0] {
        return Ok((w, ceil));
    }
    // ONNX's output side with begin/end pads, against PyTorch's with ceil mode.
    let onnx = |ceil: bool| {
        let span = side + p[0] + p[2] - k[0];
        if ceil {
            (span + s[0] - 1) / s[0] + 1
        } else {
            span / s[0] + 1
        }
    };
    if p[2] > p[0] && w.out_size(side, true) == onnx(ceil) {
        return Ok((w, true));
    }
    bail!("{}: asymmetric pads {p:?} are not supported", at(n))
}

/// A layer's name: its weight's (`features.0.weight` -> `features.0`, the
/// zoo's `conv1_w_0` -> `conv1`), else the node's (torch.onnx.export's
/// `/features/features.0/Conv` -> `features.0`), else `fallback`.
pub(super) fn layer_name(n: &NodeProto, fallback: &str) -> String {
    let w = n.input.get(1).map(String::as_str).unwrap_or("");
    if !w.starts_with("onnx::") {
        for suffix in [".weight", "_w_0", "_W", "_w"] {
            if let Some(s) = w.strip_suffix(suffix) {
                if !s.is_empty() {
                    return s.to_string();
                }
            }
        }
    }
    let parts: Vec<&str> = n.name.split('/').filter(|s| !s.is_empty()).collect();
    match parts.len() {
        0 => fallback.to_string(),
        1 => parts[0].to_string(),
        k => parts[k - 2].to_string(),
    }
}

impl Reader<'_> {
    /// A Conv (dilations and groups as given).
    pub(super) fn conv(&mut self, n: &NodeProto) -> Result<()> {
        let mut v = self.nchw(n, 0)?;
        let Shape::Maps { c, side } = v.shape else {
            bail!("{}: its input is not a map", at(n));
        };
        let w = self.get(required(n, 1, "weight")?, n)?;
        // Without kernel_shape, the weight's spatial dims (ONNX's default).
        let ks = attr_ints(n, "kernel_shape").unwrap_or_else(|| w.size()[2..].to_vec());
        let p = attr_ints(n, "pads").unwrap_or(vec![0, 0, 0, 0]);
        if ks.len() == 2
            && p.len() == 4
            && (ks[0] != ks[1] || (p[0] != p[1] && p[0] == p[2] && p[1] == p[3]))
        {
            return self.rect_conv(n, &v, w, &ks, &p);
        }
        // Asymmetric pads (TensorFlow's SAME with stride 2: [0, 0, 1, 1])
        // become a Pad node before a conv that pads nothing.
        let p = attr_ints(n, "pads").unwrap_or(vec![0, 0, 0, 0]);
        let (win, side) = if p.len() == 4 && (p[0] != p[2] || p[1] != p[3]) {
            let pads = self.pads_of(n, &p)?;
            let i = self.push(Layer::Pad { pads }, &[&v]);
            let side = side + pads[0] + pads[2];
            v = Value {
                node: Some(i),
                shape: Shape::Maps { c, side },
                nhwc: false,
                hwc: None,
                grouped: None,
                view: None,
            };
            (window_with(n, side, "conv", vec![0, 0, 0, 0])?.0, side)
        } else {
            (window(n, side, "conv")?.0, side)
        };
        let dilation = attr_ints(n, "dilations").map_or(1, |d| d[0]);
        let groups = attr_i(n, "group", 1);
        let sz = w.size();
        let k = if sz.len() == 4 { sz[2] } else { 0 };
        if sz.len() != 4
            || sz[3] != k
            || dilation * (k - 1) + 1 != win.k
            || groups < 1
            || sz[1] * groups != c
        {
            bail!("{}: weight shape {sz:?} does not fit {c} input channels, kernel {}, {groups} groups", at(n), win.k);
        }
        let b = match n.input.get(2).filter(|s| !s.is_empty()) {
            Some(name) => self.get(name, n)?.reshape([-1]),
            None => Tensor::zeros([sz[0]], (Kind::Float, tch::Device::Cpu)),
        };
        if b.size() != [sz[0]] {
            bail!(
                "{}: bias shape {:?} does not fit {} filters",
                at(n),
                b.size(),
                sz[0]
            );
        }
        self.n_conv += 1;
        let name = self.fresh(layer_name(n, &format!("conv{}", self.n_conv)));
        self.tensors.insert(format!("{name}.weight"), w);
        self.tensors.insert(format!("{name}.bias"), b);
        let mut l = Layer::conv(&name, c, sz[0], Window::new(k, win.stride, win.pad));
        if let Layer::Conv {
            groups: g,
            dilation: d,
            ..
        } = &mut l
        {
            *g = groups;
            *d = dilation;
        }
        let i = self.push(l, &[&v]);
        self.set(
            &n.output[0],
            i,
            Shape::Maps {
                c: sz[0],
                side: win.out_size(side, false),
            },
        );
        Ok(())
    }

    /// A conv with a non-square kernel or different pads along height and
    /// width (Inception's 1x7 and 7x1) that keeps the maps square.
    fn rect_conv(
        &mut self,
        n: &NodeProto,
        v: &Value,
        w: Tensor,
        ks: &[i64],
        p: &[i64],
    ) -> Result<()> {
        let Shape::Maps { c, side } = v.shape else {
            bail!("{}: its input is not a map", at(n));
        };
        let s = attr_ints(n, "strides").unwrap_or(vec![1, 1]);
        let d = attr_ints(n, "dilations").unwrap_or(vec![1, 1]);
        if s.len() != 2 || s[0] != s[1] || s[0] < 1 || d != [1, 1] {
            bail!("{}: a {ks:?} kernel with strides {s:?} and dilations {d:?}: only equal strides and no dilation are supported", at(n));
        }
        if p[0] != p[2] || p[1] != p[3] || p.iter().any(|&x| x < 0) {
            bail!(
                "{}: pads {p:?}: a non-square kernel's pads must be equal at both ends",
                at(n)
            );
        }
        let groups = attr_i(n, "group", 1);
        let sz = w.size();
        if sz.len() != 4 || sz[2] != ks[0] || sz[3] != ks[1] || groups < 1 || sz[1] * groups != c {
            bail!("{}: weight shape {sz:?} does not fit {c} input channels, kernel {ks:?}, {groups} groups", at(n));
        }
        let out = |k: i64, pad: i64| (side + 2 * pad - k) / s[0] + 1;
        let (h, wd) = (out(ks[0], p[0]), out(ks[1], p[1]));
        if h != wd || h < 1 {
            bail!(
                "{}: its {ks:?} kernel with pads {p:?} gives {h}x{wd} maps: maps must stay square",
                at(n)
            );
        }
        let b = match n.input.get(2).filter(|s| !s.is_empty()) {
            Some(name) => self.get(name, n)?.reshape([-1]),
            None => Tensor::zeros([sz[0]], (Kind::Float, tch::Device::Cpu)),
        };
        self.n_conv += 1;
        let name = self.fresh(layer_name(n, &format!("conv{}", self.n_conv)));
        self.tensors.insert(format!("{name}.weight"), w);
        self.tensors.insert(format!("{name}.bias"), b);
        let l = Layer::Conv {
            name,
            in_c: c,
            out: sz[0],
            k: ks[0],
            stride: s[0],
            pad: p[0],
            groups,
            dilation: 1,
            kw: Some(ks[1]),
            pad_w: Some(p[1]),
            weight: None,
            bias: None,
        };
        let i = self.push(l, &[v]);
        self.set(&n.output[0], i, Shape::Maps { c: sz[0], side: h });
        Ok(())
    }

    /// ONNX's 2-d pads [top, left, bottom, right], checked: at least 0 and
    /// keeping the maps square.
    pub(super) fn pads_of(&self, n: &NodeProto, p: &[i64]) -> Result<[i64; 4]> {
        let pads = [p[0], p[1], p[2], p[3]];
        if pads.iter().any(|&v| v < 0) || pads[0] + pads[2] != pads[1] + pads[3] {
            bail!(
                "{}: pads {p:?}: only pads of at least 0 that keep the maps square are supported",
                at(n)
            );
        }
        Ok(pads)
    }

    /// A constant Pad with zeros on H and W: a Pad node (a zero-width one
    /// is an alias).
    pub(super) fn pad(&mut self, n: &NodeProto) -> Result<()> {
        let v = self.value(n, 0)?;
        let Shape::Maps { c, side } = v.shape else {
            bail!("{}: its input is not a map", at(n));
        };
        let mode = attr(n, "mode").map(|a| String::from_utf8_lossy(&a.s).to_string());
        if mode.as_deref().is_some_and(|m| m != "constant") {
            bail!(
                "{}: mode {} is not supported (constant zeros only)",
                at(n),
                mode.as_deref().unwrap_or("")
            );
        }
        let value = match n.input.get(2).filter(|s| !s.is_empty()) {
            Some(name) => self.get(name, n)?.to_kind(Kind::Double).reshape([-1]),
            None => Tensor::from_slice(&[attr_f(n, "value", 0.0)]),
        };
        if value.numel() != 1 || value.double_value(&[0]) != 0.0 {
            bail!("{}: only padding with zeros is supported", at(n));
        }
        if n.input.get(3).is_some_and(|s| !s.is_empty()) {
            bail!("{}: Pad with axes is not supported", at(n));
        }
        let p: Vec<i64> = match n.input.get(1).filter(|s| !s.is_empty()) {
            Some(name) => {
                Vec::<i64>::try_from(&self.get(name, n)?.to_kind(Kind::Int64).reshape([-1]))?
            }
            None => attr_ints(n, "pads").ok_or_else(|| anyhow!("{}: no pads", at(n)))?,
        };
        // [N, C, H, W] (or [N, H, W, C]) begins then ends; nothing on N and C.
        let p: Vec<i64> = match (v.nhwc, p.as_slice()) {
            (true, [n0, h0, w0, c0, n1, h1, w1, c1]) => {
                vec![*n0, *c0, *h0, *w0, *n1, *c1, *h1, *w1]
            }
            _ => p,
        };
        if p.len() != 8 || p[0] != 0 || p[1] != 0 || p[4] != 0 || p[5] != 0 {
            bail!(
                "{}: pads {p:?}: only pads of H and W of a 4-d map are supported",
                at(n)
            );
        }
        let pads = self.pads_of(n, &[p[2], p[3], p[6], p[7]])?;
        if pads == [0; 4] {
            return self.alias(n);
        }
        let i = self.push(Layer::Pad { pads }, &[&v]);
        let side = side + pads[0] + pads[2];
        self.set_layout(&n.output[0], i, Shape::Maps { c, side }, v.nhwc);
        Ok(())
    }
}
