//! ONNX graphs of plain CNNs (the ONNX zoo's ZFNet-512, bvlc_alexnet,
//! CaffeNet, VGG16 at opsets 3–12, and `torch.onnx.export` output) as a
//! layer list: Conv, Relu (and Clip at 0 with no max), BatchNormalization
//! (folded into its conv), LRN, MaxPool, AveragePool, GlobalAveragePool,
//! Flatten/Reshape, Gemm or MatMul+Add, Dropout/Identity, and a final Softmax
//! (dropped: the model's output is taken before it). Anything else is refused
//! with the node's name and op.

use super::fold_bn;
use crate::net::{Layer, Window};
use anyhow::{anyhow, bail, Context, Result};
use onnx_protobuf::{AttributeProto, Message, ModelProto, NodeProto, TensorProto};
use std::collections::HashMap;
use std::path::Path;
use tch::{Kind, Tensor};

/// How errors name a node: `node "conv1" (Conv)`.
fn at(n: &NodeProto) -> String {
    format!("node {:?} ({})", n.name, n.op_type)
}

pub struct Graph {
    pub layers: Vec<Layer>,
    pub tensors: HashMap<String, Tensor>,
    pub input_name: String,
    /// The input's spatial side, when the graph fixes it.
    pub input_size: Option<i64>,
}

fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    n.attribute.iter().find(|a| a.name == name)
}
fn attr_i(n: &NodeProto, name: &str, default: i64) -> i64 {
    attr(n, name).map_or(default, |a| a.i)
}
fn attr_f(n: &NodeProto, name: &str, default: f64) -> f64 {
    attr(n, name).map_or(default, |a| a.f as f64)
}
fn attr_ints(n: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(n, name).map(|a| a.ints.clone())
}

/// The bytes of a tensor stored outside the model file (`torch.onnx.export`
/// writes large weights to `MODEL.onnx.data`): a plain file name beside the
/// model, an offset and a length.
fn external(t: &TensorProto, dir: &Path) -> Result<Vec<u8>> {
    let get = |k: &str| {
        t.external_data
            .iter()
            .find(|e| e.key == k)
            .map(|e| e.value.clone())
    };
    let location = get("location")
        .ok_or_else(|| anyhow!("tensor {}: external data without a location", t.name))?;
    if location.contains('/') || location.contains('\\') || location.starts_with('.') {
        bail!(
            "tensor {}: external data location {location:?} must be a file name beside the model",
            t.name
        );
    }
    let num = |k: &str| -> Result<Option<u64>> {
        get(k)
            .map(|v| {
                v.parse::<u64>()
                    .with_context(|| format!("tensor {}: external data {k} {v:?}", t.name))
            })
            .transpose()
    };
    let (offset, length) = (num("offset")?.unwrap_or(0), num("length")?);
    let path = dir.join(&location);
    let mut f = std::fs::File::open(&path)
        .with_context(|| format!("tensor {}: cannot open {}", t.name, path.display()))?;
    use std::io::{Read, Seek};
    f.seek(std::io::SeekFrom::Start(offset))?;
    let mut buf = vec![];
    match length {
        Some(n) => {
            buf.resize(n as usize, 0);
            f.read_exact(&mut buf)
                .with_context(|| format!("tensor {}: {} is too short", t.name, path.display()))?;
        }
        None => {
            f.read_to_end(&mut buf)?;
        }
    }
    Ok(buf)
}

/// A TensorProto's values as a tch tensor (float32 or int64 kinds); external
/// data is read from `dir`.
fn tensor(t: &TensorProto, dir: &Path) -> Result<Tensor> {
    let dims = t.dims.clone();
    let n: i64 = dims.iter().product();
    let ext;
    let raw: &[u8] = if t.external_data.is_empty() {
        &t.raw_data
    } else {
        ext = external(t, dir)?;
        &ext
    };
    let le = |w: usize| raw.chunks_exact(w);
    let out = match t.data_type {
        1 => {
            let v: Vec<f32> = if !raw.is_empty() {
                le(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            } else {
                t.float_data.clone()
            };
            Tensor::from_slice(&v)
        }
        10 => {
            let v: Vec<f32> = if !raw.is_empty() {
                le(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect()
            } else {
                t.int32_data
                    .iter()
                    .map(|&b| half::f16::from_bits(b as u16).to_f32())
                    .collect()
            };
            Tensor::from_slice(&v)
        }
        11 => {
            let v: Vec<f64> = if !raw.is_empty() {
                le(8)
                    .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect()
            } else {
                t.double_data.clone()
            };
            Tensor::from_slice(&v).to_kind(Kind::Float)
        }
        7 => {
            let v: Vec<i64> = if !raw.is_empty() {
                le(8)
                    .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect()
            } else {
                t.int64_data.clone()
            };
            Tensor::from_slice(&v)
        }
        dt => bail!(
            "tensor {}: data type {dt} is not read (float, float16, double, int64 are)",
            t.name
        ),
    };
    if out.numel() as i64 != n {
        bail!(
            "tensor {}: {} values for shape {dims:?}",
            t.name,
            out.numel()
        );
    }
    Ok(out.view(dims.as_slice()))
}

/// A square window from kernel_shape/strides/pads; asymmetric pads that add
/// one row/column at the end become ceil mode when that gives the same size.
fn window(n: &NodeProto, side: i64, what: &str) -> Result<(Window, bool)> {
    let k = attr_ints(n, "kernel_shape").ok_or_else(|| anyhow!("{}: no kernel_shape", at(n)))?;
    let s = attr_ints(n, "strides").unwrap_or(vec![1, 1]);
    let p = attr_ints(n, "pads").unwrap_or(vec![0, 0, 0, 0]);
    if let Some(d) = attr_ints(n, "dilations") {
        if d.iter().any(|&v| v != 1) {
            bail!("{}: dilated {what}s are not supported", at(n));
        }
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
fn layer_name(n: &NodeProto, fallback: &str) -> String {
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

/// The input's side when the graph declares a square N×C×S×S input.
fn input_side(input: &onnx_protobuf::ValueInfoProto) -> Option<i64> {
    use onnx_protobuf::tensor_shape_proto::dimension::Value as Dim;
    let dims = input.type_.as_ref()?.value.as_ref().and_then(|v| match v {
        onnx_protobuf::type_proto::Value::TensorType(tt) => tt.shape.as_ref().map(|s| {
            s.dim
                .iter()
                .map(|d| match d.value {
                    Some(Dim::DimValue(v)) => v,
                    _ => 0,
                })
                .collect::<Vec<i64>>()
        }),
        _ => None,
    })?;
    (dims.len() == 4 && dims[2] > 0 && dims[2] == dims[3]).then_some(dims[2])
}

/// Parse an ONNX file into a layer list and its weights.
pub fn read(bytes: &[u8], dir: &Path) -> Result<Graph> {
    let model = ModelProto::parse_from_bytes(bytes).context("not an ONNX model file")?;
    let g = model
        .graph
        .as_ref()
        .ok_or_else(|| anyhow!("the ONNX model has no graph"))?;
    let mut consts: HashMap<String, Tensor> = HashMap::new();
    for t in &g.initializer {
        consts.insert(t.name.clone(), tensor(t, dir)?);
    }
    let input = g
        .input
        .iter()
        .find(|i| !consts.contains_key(&i.name))
        .ok_or_else(|| anyhow!("the graph has no input"))?;
    let input_size = input_side(input);
    let mut chain = Chain {
        dir,
        nodes: &g.node,
        consts,
        layers: vec![],
        tensors: HashMap::new(),
        current: input.name.clone(),
        c: 3,
        side: input_size.unwrap_or(224),
        flat: None,
        next: 0,
        n_conv: 0,
        n_fc: 0,
    };
    let nodes = &g.node;
    while chain.next < nodes.len() {
        let n = &nodes[chain.next];
        chain.next += 1;
        chain.node(n)?;
    }
    Ok(Graph {
        layers: chain.layers,
        tensors: chain.tensors,
        input_name: input.name.clone(),
        input_size,
    })
}

/// The layer list being read off a plain chain of nodes, and the running
/// shape: channels and side (spatial), or features (flat).
struct Chain<'a> {
    dir: &'a Path,
    nodes: &'a [NodeProto],
    consts: HashMap<String, Tensor>,
    layers: Vec<Layer>,
    tensors: HashMap<String, Tensor>,
    /// The output of the last node read: the next node's input.
    current: String,
    c: i64,
    side: i64,
    flat: Option<i64>,
    /// The next node to read.
    next: usize,
    n_conv: usize,
    n_fc: usize,
}

/// Input `k` of node `n`, which must be there: `what` names it.
fn required<'n>(n: &'n NodeProto, k: usize, what: &str) -> Result<&'n str> {
    n.input
        .get(k)
        .filter(|s| !s.is_empty())
        .map(String::as_str)
        .ok_or_else(|| anyhow!("{}: its {what} input is missing", at(n)))
}

impl<'a> Chain<'a> {
    /// A constant input of node `n`.
    fn get(&self, name: &str, n: &NodeProto) -> Result<Tensor> {
        self.consts.get(name).map(|t| t.shallow_clone()).ok_or_else(|| {
            anyhow!(
                "{}: input {name:?} is not a constant (only weights from initializers or Constant nodes are read)",
                at(n)
            )
        })
    }

    /// The node after the current one, if it is a `op` reading the current output.
    fn peek(&self, op: &str) -> Option<&'a NodeProto> {
        let nodes = self.nodes;
        nodes
            .get(self.next)
            .filter(|m| m.op_type == op && m.input.contains(&self.current))
    }

    fn node(&mut self, n: &NodeProto) -> Result<()> {
        if n.op_type == "Constant" {
            if let (Some(out), Some(a)) = (n.output.first(), attr(n, "value")) {
                if let Some(t) = a.t.as_ref() {
                    self.consts.insert(out.clone(), tensor(t, self.dir)?);
                    return Ok(());
                }
            }
            bail!("{}: only tensor-valued constants are supported", at(n));
        }
        // Shape arithmetic feeding a Reshape (torch.onnx.export of flatten).
        if matches!(
            n.op_type.as_str(),
            "Shape" | "Gather" | "Unsqueeze" | "Concat"
        ) && !n.input.contains(&self.current)
        {
            return Ok(());
        }
        if n.input.first() != Some(&self.current) {
            bail!(
                "{}: the graph is not a plain chain (its input {:?} is not the previous layer's output)",
                at(n),
                n.input.first().cloned().unwrap_or_default()
            );
        }
        let out = n.output.first().cloned().unwrap_or_default();
        match n.op_type.as_str() {
            "Conv" => return self.conv(n),
            "Gemm" | "MatMul" => return self.linear(n),
            "Relu" => self.layers.push(Layer::Relu),
            "Clip" => self.clip(n)?,
            "LRN" => self.layers.push(Layer::Lrn {
                size: attr_i(n, "size", 0),
                alpha: attr_f(n, "alpha", 1e-4),
                beta: attr_f(n, "beta", 0.75),
                k: attr_f(n, "bias", 1.0),
            }),
            "MaxPool" | "AveragePool" => self.pool(n)?,
            "GlobalAveragePool" => {
                self.layers.push(Layer::AdaptiveAvgPool { out: 1 });
                self.side = 1;
            }
            "Flatten" | "Reshape" => {
                if n.op_type == "Flatten" && attr_i(n, "axis", 1) != 1 {
                    bail!("{}: only Flatten with axis 1 is supported", at(n));
                }
                if self.flat.is_none() {
                    self.layers.push(Layer::Flatten);
                    self.flat = Some(self.c * self.side * self.side);
                }
            }
            "Dropout" => self.layers.push(Layer::Dropout {
                p: attr_f(n, "ratio", 0.5),
            }),
            "Identity" => {}
            "Softmax" | "LogSoftmax" if self.next == self.nodes.len() => {}
            op => bail!("{}: op {op} is not supported (zfvis reads plain CNNs: Conv, Relu, LRN, pools, Gemm…)", at(n)),
        }
        self.current = out;
        Ok(())
    }

    /// A Conv, with a BatchNormalization right after it folded in.
    fn conv(&mut self, n: &NodeProto) -> Result<()> {
        let c = self.c;
        let w = self.get(required(n, 1, "weight")?, n)?;
        let (win, _) = window(n, self.side, "conv")?;
        let groups = attr_i(n, "group", 1);
        let sz = w.size();
        if sz.len() != 4 || sz[2] != win.k || sz[3] != win.k || sz[1] * groups != c {
            bail!("{}: weight shape {sz:?} does not fit {c} input channels, kernel {}, {groups} groups", at(n), win.k);
        }
        let mut b = match n.input.get(2).filter(|s| !s.is_empty()) {
            Some(name) => self.get(name, n)?,
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
        let mut w = w;
        let nodes = self.nodes;
        match nodes
            .get(self.next)
            .filter(|m| m.op_type == "BatchNormalization")
        {
            Some(bn) => {
                let what = ["input", "scale", "bias", "mean", "variance"];
                let g = |k: usize| -> Result<Tensor> {
                    let t = self.get(required(bn, k, what[k])?, bn)?.reshape([-1]);
                    if t.size() != [sz[0]] {
                        bail!(
                            "{}: its {} has {} values for {} channels",
                            at(bn),
                            what[k],
                            t.size()[0],
                            sz[0]
                        );
                    }
                    Ok(t)
                };
                (w, b) = fold_bn(
                    &w,
                    &b,
                    &g(1)?,
                    &g(2)?,
                    &g(3)?,
                    &g(4)?,
                    attr_f(bn, "epsilon", 1e-5),
                );
                self.next += 1;
                self.current = bn.output[0].clone();
            }
            None => self.current = n.output.first().cloned().unwrap_or_default(),
        }
        self.n_conv += 1;
        let name = layer_name(n, &format!("conv{}", self.n_conv));
        self.tensors.insert(format!("{name}.weight"), w);
        self.tensors.insert(format!("{name}.bias"), b);
        let mut l = Layer::conv(&name, c, sz[0], win);
        if let Layer::Conv { groups: g, .. } = &mut l {
            *g = groups;
        }
        self.layers.push(l);
        self.c = sz[0];
        self.side = win.out_size(self.side, false);
        Ok(())
    }

    /// Clip(0, no max) is a ReLU.
    fn clip(&mut self, n: &NodeProto) -> Result<()> {
        let (lo, hi) = if n.input.len() > 1 {
            let v = |k: usize| -> Result<Option<f64>> {
                match n.input.get(k).filter(|s| !s.is_empty()) {
                    Some(s) => Ok(Some(self.get(s, n)?.double_value(&[]))),
                    None => Ok(None),
                }
            };
            (v(1)?, v(2)?)
        } else {
            (
                attr(n, "min").map(|a| a.f as f64),
                attr(n, "max").map(|a| a.f as f64),
            )
        };
        if lo != Some(0.0) || hi.is_some_and(|h| h < 3.0e38) {
            bail!(
                "{}: only Clip with min 0 and no max (a ReLU) is supported",
                at(n)
            );
        }
        self.layers.push(Layer::Relu);
        Ok(())
    }

    fn pool(&mut self, n: &NodeProto) -> Result<()> {
        let (w, ceil) = window(n, self.side, "pool")?;
        if n.op_type == "MaxPool" {
            if n.output.len() > 1 && !n.output[1].is_empty() {
                bail!("{}: MaxPool's indices output is not supported", at(n));
            }
            self.layers.push(Layer::max_pool(w, ceil));
        } else {
            self.layers.push(Layer::AvgPool {
                k: w.k,
                stride: w.stride,
                pad: w.pad,
                ceil_mode: ceil,
                count_include_pad: attr_i(n, "count_include_pad", 0) == 1,
            });
        }
        self.side = w.out_size(self.side, ceil);
        Ok(())
    }

    /// Gemm, or MatMul with the Add of its bias after it.
    fn linear(&mut self, n: &NodeProto) -> Result<()> {
        let f = self
            .flat
            .ok_or_else(|| anyhow!("{}: a fully connected layer before any Flatten", at(n)))?;
        let w0 = self.get(required(n, 1, "weight")?, n)?;
        if w0.dim() != 2 {
            bail!(
                "{}: its weight has shape {:?}; a fully connected layer's is 2-d",
                at(n),
                w0.size()
            );
        }
        let (mut w, mut b): (Tensor, Tensor);
        self.current = n.output.first().cloned().unwrap_or_default();
        if n.op_type == "Gemm" {
            if attr_i(n, "transA", 0) != 0 {
                bail!("{}: transA is not supported", at(n));
            }
            w = if attr_i(n, "transB", 0) == 1 {
                w0
            } else {
                w0.tr()
            };
            #[allow(clippy::assign_op_pattern)] // w may be a constant's view
            {
                w = w * attr_f(n, "alpha", 1.0);
            }
            b = match n.input.get(2).filter(|s| !s.is_empty()) {
                Some(s) => self.get(s, n)? * attr_f(n, "beta", 1.0),
                None => Tensor::zeros([w.size()[0]], (Kind::Float, tch::Device::Cpu)),
            };
        } else {
            w = w0.tr();
            b = Tensor::zeros([w.size()[0]], (Kind::Float, tch::Device::Cpu));
            if let Some(add) = self.peek("Add") {
                let other = add
                    .input
                    .iter()
                    .find(|x| **x != self.current)
                    .cloned()
                    .unwrap_or_default();
                b = self.get(&other, add)?.reshape([-1]);
                self.current = add.output[0].clone();
                self.next += 1;
            }
        }
        let (o, inp) = (w.size()[0], w.size()[1]);
        if inp != f || b.size() != [o] {
            bail!(
                "{}: weight {:?} / bias {:?} do not fit {f} inputs",
                at(n),
                w.size(),
                b.size()
            );
        }
        self.n_fc += 1;
        let name = layer_name(n, &format!("fc{}", self.n_fc));
        self.tensors
            .insert(format!("{name}.weight"), w.contiguous());
        self.tensors.insert(format!("{name}.bias"), b.contiguous());
        self.layers.push(Layer::linear(&name, f, o));
        self.flat = Some(o);
        Ok(())
    }
}
