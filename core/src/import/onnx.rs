//! ONNX graphs of plain CNNs (the ONNX zoo's ZFNet-512, bvlc_alexnet,
//! CaffeNet, VGG16 at opsets 3–12, and `torch.onnx.export` output) as a
//! layer list: Conv, Relu (and Clip at 0 with no max), BatchNormalization
//! (folded into its conv), LRN, MaxPool, AveragePool, GlobalAveragePool,
//! Flatten/Reshape, Gemm or MatMul+Add, Dropout/Identity, and a final Softmax
//! (dropped: the model's output is taken before it). Anything else is refused
//! with the node's name and op.

use super::fold_bn;
use crate::net::{Layer, Shape, Window};
use anyhow::{anyhow, bail, Context, Result};
use onnx_protobuf::{AttributeProto, Message, ModelProto, NodeProto, TensorProto};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use tch::{Kind, Tensor};

/// How errors name a node: `node "conv1" (Conv)`.
fn at(n: &NodeProto) -> String {
    format!("node {:?} ({})", n.name, n.op_type)
}

pub struct Graph {
    pub layers: Vec<Layer>,
    /// The nodes each node reads (where not the one before it), and the
    /// units: every node with maps, named by its ONNX output.
    pub inputs: BTreeMap<usize, Vec<usize>>,
    pub units: BTreeMap<usize, String>,
    pub tensors: HashMap<String, Tensor>,
    pub input_name: String,
    /// The input's spatial side, when the graph fixes it.
    pub input_size: Option<i64>,
    pub in_channels: i64,
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
        6 => {
            let v: Vec<i64> = if !raw.is_empty() {
                le(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                    .collect()
            } else {
                t.int32_data.iter().map(|&v| v as i64).collect()
            };
            Tensor::from_slice(&v)
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
            "tensor {}: data type {dt} is not read (float, float16, double, int32, int64 are)",
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
    window_with(
        n,
        side,
        what,
        attr_ints(n, "pads").unwrap_or(vec![0, 0, 0, 0]),
    )
}

/// [`window`] with the pads given (a conv whose asymmetric pads became a
/// Pad node before it reads none).
fn window_with(n: &NodeProto, side: i64, what: &str, p: Vec<i64>) -> Result<(Window, bool)> {
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

/// A declared square image input: side, channels, channels-last or not.
struct InputShape {
    side: i64,
    c: i64,
    nhwc: bool,
}

/// The input's shape when the graph declares a square N×C×S×S input (or
/// N×S×S×C with 1 or 3 channels, as Keras models converted by tf2onnx).
fn input_side(input: &onnx_protobuf::ValueInfoProto) -> Option<InputShape> {
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
    match dims.as_slice() {
        [_, c, h, w] if *h > 0 && h == w && (*c == 1 || *c == 3) => Some(InputShape {
            side: *h,
            c: *c,
            nhwc: false,
        }),
        [_, h, w, c] if *h > 0 && h == w && (*c == 1 || *c == 3) => Some(InputShape {
            side: *h,
            c: *c,
            nhwc: true,
        }),
        [_, c, h, w] if *h > 0 && h == w => Some(InputShape {
            side: *h,
            c: *c,
            nhwc: false,
        }),
        _ => None,
    }
}

/// What a value of the graph is: a node's output (`None`: the image) with
/// its shape. `nhwc`: maps laid out channels-last (a Transpose of the
/// NCHW maps, or a channels-last image before its Transpose); `hwc`: a
/// flat vector flattened from channels-last maps (c, h, w), whose next
/// linear layer's weight columns are reordered to channels-first.
#[derive(Clone)]
struct Value {
    node: Option<usize>,
    shape: Shape,
    nhwc: bool,
    hwc: Option<(i64, i64, i64)>,
}

/// Parse an ONNX file into a graph of layers and its weights.
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
    let (input_size, in_channels, nhwc) = match input_side(input) {
        Some(s) => (Some(s.side), s.c, s.nhwc),
        None => (None, 3, false),
    };
    let mut uses: HashMap<String, usize> = HashMap::new();
    for n in &g.node {
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            *uses.entry(i.clone()).or_default() += 1;
        }
    }
    let mut r = Reader {
        dir,
        consts,
        values: HashMap::new(),
        uses,
        outputs: g.output.iter().map(|o| o.name.clone()).collect(),
        layers: vec![],
        inputs: BTreeMap::new(),
        units: BTreeMap::new(),
        tensors: HashMap::new(),
        names: HashSet::new(),
        last: None,
        n_conv: 0,
        n_fc: 0,
    };
    let side = input_size.unwrap_or(224);
    r.values.insert(
        input.name.clone(),
        Value {
            node: None,
            shape: Shape::Maps {
                c: in_channels,
                side,
            },
            nhwc,
            hwc: None,
        },
    );
    if r.uses.get(&input.name).copied().unwrap_or(0) > 1 {
        // Several nodes read the image: node 0 passes it on to them.
        let v = r.values[&input.name].clone();
        r.push(Layer::Dropout { p: 0.0 }, &[&v]);
    }
    for n in &g.node {
        r.node(n)?;
    }
    Ok(Graph {
        layers: r.layers,
        inputs: r.inputs,
        units: r.units,
        tensors: r.tensors,
        input_name: input.name.clone(),
        input_size,
        in_channels,
    })
}

/// The network being read off the graph, node by node.
struct Reader<'a> {
    dir: &'a Path,
    /// Constant values: initializers, Constant nodes and folded shape arithmetic.
    consts: HashMap<String, Tensor>,
    values: HashMap<String, Value>,
    /// How many nodes read each value.
    uses: HashMap<String, usize>,
    outputs: HashSet<String>,
    layers: Vec<Layer>,
    inputs: BTreeMap<usize, Vec<usize>>,
    units: BTreeMap<usize, String>,
    tensors: HashMap<String, Tensor>,
    names: HashSet<String>,
    /// The last node added.
    last: Option<usize>,
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

/// Ops whose outputs are constants when their inputs are (shape arithmetic).
const FOLDED: &[&str] = &[
    "Identity",
    "Cast",
    "Gather",
    "Unsqueeze",
    "Squeeze",
    "Concat",
    "Slice",
    "Reshape",
    "Mul",
    "Add",
    "Sub",
    "Div",
    "Flatten",
    "Transpose",
];

impl<'a> Reader<'a> {
    /// A constant input of node `n`.
    fn get(&self, name: &str, n: &NodeProto) -> Result<Tensor> {
        self.consts.get(name).map(|t| t.shallow_clone()).ok_or_else(|| {
            anyhow!(
                "{}: input {name:?} is not a constant (only weights from initializers or Constant nodes are read)",
                at(n)
            )
        })
    }

    /// The value input `k` of node `n` reads (a node's output or the image).
    fn value(&self, n: &NodeProto, k: usize) -> Result<Value> {
        let name = required(n, k, "data")?;
        self.values.get(name).cloned().ok_or_else(|| {
            anyhow!("{}: its input {name:?} is neither a constant nor an output of a node read before it", at(n))
        })
    }

    /// Add `l` reading `from`.
    fn push(&mut self, l: Layer, from: &[&Value]) -> usize {
        let i = self.layers.len();
        let srcs: Vec<Option<usize>> = from.iter().map(|v| v.node).collect();
        let chained = match srcs.as_slice() {
            [None] => i == 0,
            [Some(j)] => *j + 1 == i,
            _ => false,
        };
        if !chained {
            // Only node 0 reads the image (see `read`).
            self.inputs
                .insert(i, srcs.iter().map(|s| s.unwrap_or(0)).collect());
        }
        self.layers.push(l);
        self.last = Some(i);
        i
    }

    /// Name `out` the value of node `i` with shape `shape` (a unit when it has maps).
    fn set(&mut self, out: &str, i: usize, shape: Shape) {
        if matches!(shape, Shape::Maps { .. }) {
            self.units.insert(i, out.to_string());
        }
        self.values.insert(
            out.to_string(),
            Value {
                node: Some(i),
                shape,
                nhwc: false,
                hwc: None,
            },
        );
    }

    /// A layer name not used yet.
    fn fresh(&mut self, name: String) -> String {
        let mut n = name.clone();
        let mut k = 1;
        while !self.names.insert(n.clone()) {
            k += 1;
            n = format!("{name}_{k}");
        }
        n
    }

    fn node(&mut self, n: &NodeProto) -> Result<()> {
        let out = n.output.first().cloned().unwrap_or_default();
        if n.op_type == "Constant" {
            if let Some(t) = attr(n, "value").and_then(|a| a.t.as_ref()) {
                self.consts.insert(out, tensor(t, self.dir)?);
                return Ok(());
            }
            bail!("{}: only tensor-valued constants are supported", at(n));
        }
        let ins: Vec<&String> = n.input.iter().filter(|i| !i.is_empty()).collect();
        if n.op_type == "Shape" {
            let v = self.value(n, 0)?;
            self.consts.insert(out, shape_tensor(&v));
            return Ok(());
        }
        if FOLDED.contains(&n.op_type.as_str())
            && !ins.is_empty()
            && ins.iter().all(|i| self.consts.contains_key(*i))
        {
            let t = fold(
                n,
                &ins.iter()
                    .map(|i| self.consts[*i].shallow_clone())
                    .collect::<Vec<_>>(),
            )?;
            self.consts.insert(out, t);
            return Ok(());
        }
        match n.op_type.as_str() {
            "Conv" => self.conv(n),
            "BatchNormalization" => self.batch_norm(n),
            "Gemm" | "MatMul" => self.linear(n),
            "Relu" => self.pointwise(n, Layer::Relu),
            "Clip" => {
                let l = self.clip(n)?;
                self.pointwise(n, l)
            }
            "LRN" => self.pointwise(
                n,
                Layer::Lrn {
                    size: attr_i(n, "size", 0),
                    alpha: attr_f(n, "alpha", 1e-4),
                    beta: attr_f(n, "beta", 0.75),
                    k: attr_f(n, "bias", 1.0),
                },
            ),
            "MaxPool" | "AveragePool" => self.pool(n),
            "GlobalAveragePool" | "ReduceMean" => self.global_pool(n),
            "Flatten" | "Reshape" => self.flatten(n),
            "Transpose" => self.transpose(n),
            "Dropout" | "Identity" => self.alias(n),
            "Pad" => self.pad(n),
            "Add" | "Sum" | "Mul" | "Sub" | "Div" => self.arithmetic(n),
            "Concat" => self.concat(n),
            "Softmax" | "LogSoftmax" if self.outputs.contains(&out) => self.alias(n),
            op => bail!("{}: op {op} is not supported (zfvis reads CNNs: Conv, Relu, Clip, BatchNormalization, pools, Add, Concat, Gemm…)", at(n)),
        }
    }

    /// The node's output is its first input.
    fn alias(&mut self, n: &NodeProto) -> Result<()> {
        let v = self.value(n, 0)?;
        self.values.insert(n.output[0].clone(), v);
        Ok(())
    }

    /// Maps in the channels-first layout the layers compute in.
    fn nchw(&self, n: &NodeProto, k: usize) -> Result<Value> {
        let v = self.value(n, k)?;
        if v.nhwc {
            bail!(
                "{}: reads channels-last maps; only Transpose and Flatten/Reshape may",
                at(n)
            );
        }
        Ok(v)
    }

    /// A one-input layer that keeps its input's shape.
    fn pointwise(&mut self, n: &NodeProto, l: Layer) -> Result<()> {
        let v = self.nchw(n, 0)?;
        let i = self.push(l, &[&v]);
        self.set(&n.output[0], i, v.shape);
        Ok(())
    }

    /// A Conv (dilations and groups as given).
    fn conv(&mut self, n: &NodeProto) -> Result<()> {
        let mut v = self.nchw(n, 0)?;
        let Shape::Maps { c, side } = v.shape else {
            bail!("{}: its input is not a map", at(n));
        };
        let w = self.get(required(n, 1, "weight")?, n)?;
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

    /// ONNX's 2-d pads [top, left, bottom, right], checked: at least 0 and
    /// keeping the maps square.
    fn pads_of(&self, n: &NodeProto, p: &[i64]) -> Result<[i64; 4]> {
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
    fn pad(&mut self, n: &NodeProto) -> Result<()> {
        let v = self.nchw(n, 0)?;
        let Shape::Maps { c, side } = v.shape else {
            bail!("{}: its input is not a map", at(n));
        };
        let mode = attr(n, "mode").map(|a| String::from_utf8_lossy(&a.s).to_string());
        if mode.as_deref().is_some_and(|m| m != "constant") {
            bail!(
                "{}: mode {} is not supported (constant zeros only)",
                at(n),
                mode.unwrap_or_default()
            );
        }
        let value = match n.input.get(2).filter(|s| !s.is_empty()) {
            Some(name) => self.get(name, n)?.to_kind(Kind::Double).reshape([-1]),
            None => Tensor::from_slice(&[attr_f(n, "value", 0.0) as f64]),
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
        // [N, C, H, W] begins then ends; nothing on N and C.
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
        self.set(
            &n.output[0],
            i,
            Shape::Maps {
                c,
                side: side + pads[0] + pads[2],
            },
        );
        Ok(())
    }

    /// Batch norm: folded into the conv before it when that conv's output
    /// feeds nothing else, otherwise a per-channel affine node.
    fn batch_norm(&mut self, n: &NodeProto) -> Result<()> {
        let v = self.nchw(n, 0)?;
        let c = match v.shape {
            Shape::Maps { c, .. } => c,
            Shape::Flat(f) => f,
        };
        let what = ["input", "scale", "bias", "mean", "variance"];
        let g = |k: usize| -> Result<Tensor> {
            let t = self.get(required(n, k, what[k])?, n)?.reshape([-1]);
            if t.size() != [c] {
                bail!(
                    "{}: its {} has {} values for {c} channels",
                    at(n),
                    what[k],
                    t.size()[0]
                );
            }
            Ok(t)
        };
        let (gamma, beta, mean, var) = (g(1)?, g(2)?, g(3)?, g(4)?);
        let eps = attr_f(n, "epsilon", 1e-5);
        let conv = v.node.filter(|&i| {
            matches!(self.layers[i], Layer::Conv { .. })
                && self.uses.get(required(n, 0, "input").unwrap_or("")) == Some(&1)
                && self.units.get(&i).map(String::as_str) == n.input.first().map(String::as_str)
        });
        if let Some(i) = conv {
            let (wn, bn) = self.layers[i].tensor_names().expect("a conv");
            let (w, b) = fold_bn(
                &self.tensors[&wn],
                &self.tensors[&bn],
                &gamma,
                &beta,
                &mean,
                &var,
                eps,
            );
            self.tensors.insert(wn, w);
            self.tensors.insert(bn, b);
            self.set(&n.output[0], i, v.shape);
            return Ok(());
        }
        let (scale, shift) = super::bn_affine(&gamma, &beta, &mean, &var, eps);
        self.affine(n, &v, scale, shift)
    }

    /// A per-channel `x·scale + shift` node.
    fn affine(&mut self, n: &NodeProto, v: &Value, scale: Tensor, shift: Tensor) -> Result<()> {
        let c = match v.shape {
            Shape::Maps { c, .. } => c,
            Shape::Flat(f) => f,
        };
        let name = self.fresh(layer_name(n, &format!("affine{}", self.layers.len())));
        self.tensors.insert(format!("{name}.scale"), scale);
        self.tensors.insert(format!("{name}.shift"), shift);
        let i = self.push(Layer::Affine { name, c }, &[v]);
        self.set(&n.output[0], i, v.shape);
        Ok(())
    }

    /// Add/Sum of two maps (a residual connection), or Mul/Add/Sub/Div by a
    /// per-channel constant (an affine node), or a linear layer's bias Add.
    fn arithmetic(&mut self, n: &NodeProto) -> Result<()> {
        let ins: Vec<String> = n.input.iter().filter(|i| !i.is_empty()).cloned().collect();
        let consts: Vec<usize> = (0..ins.len())
            .filter(|&k| self.consts.contains_key(&ins[k]))
            .collect();
        if consts.is_empty() {
            if !matches!(n.op_type.as_str(), "Add" | "Sum") || ins.len() < 2 {
                bail!("{}: only Add/Sum of maps (a residual connection) is supported between two layers' outputs", at(n));
            }
            let vs: Vec<Value> = (0..ins.len())
                .map(|k| self.nchw(n, k))
                .collect::<Result<_>>()?;
            if vs.iter().any(|v| v.shape != vs[0].shape) {
                bail!("{}: adds values of different shapes", at(n));
            }
            let i = self.push(Layer::Add, &vs.iter().collect::<Vec<_>>());
            self.set(&n.output[0], i, vs[0].shape);
            return Ok(());
        }
        if ins.len() != 2
            || consts.len() != 1
            || (consts[0] == 0 && matches!(n.op_type.as_str(), "Sub" | "Div"))
        {
            bail!(
                "{}: only a map {} a per-channel constant is supported",
                at(n),
                n.op_type
            );
        }
        let v = self.nchw(n, 1 - consts[0])?;
        let c = match v.shape {
            Shape::Maps { c, .. } => c,
            Shape::Flat(f) => f,
        };
        let k = self.consts[&ins[consts[0]]].to_kind(Kind::Float);
        let k = per_channel(&k, &v, c).ok_or_else(|| {
            anyhow!(
                "{}: its constant of shape {:?} is not per channel of {c} channels",
                at(n),
                k.size()
            )
        })?;
        // The bias of a MatMul read just before.
        if n.op_type == "Add" {
            if let Some(i) = v.node.filter(|&i| {
                matches!(self.layers[i], Layer::Linear { .. })
                    && self.uses.get(&ins[1 - consts[0]]) == Some(&1)
                    && self.last == Some(i)
            }) {
                let (_, bn) = self.layers[i].tensor_names().expect("linear");
                let b = &self.tensors[&bn] + &k;
                self.tensors.insert(bn, b);
                self.values.insert(n.output[0].clone(), v);
                return Ok(());
            }
        }
        let (one, zero) = (k.ones_like(), k.zeros_like());
        let (scale, shift) = match n.op_type.as_str() {
            "Mul" => (k, zero),
            "Div" => (k.reciprocal(), zero),
            "Sub" => (one, -k),
            _ => (one, k),
        };
        self.affine(n, &v, scale, shift)
    }

    /// Channel concatenation of maps.
    fn concat(&mut self, n: &NodeProto) -> Result<()> {
        let vs: Vec<Value> = (0..n.input.len())
            .map(|k| self.nchw(n, k))
            .collect::<Result<_>>()?;
        let axis = attr_i(n, "axis", 1);
        let shape = crate::net::concat_shape(&vs.iter().map(|v| v.shape).collect::<Vec<_>>());
        match (axis, shape) {
            (1 | -3, Some(s)) => {
                let i = self.push(Layer::Concat, &vs.iter().collect::<Vec<_>>());
                self.set(&n.output[0], i, s);
                Ok(())
            }
            _ => bail!(
                "{}: only a concatenation of maps of one size along channels is supported",
                at(n)
            ),
        }
    }

    /// ReLU, or Clip(0, max): ReLU6 and its kin.
    fn clip(&self, n: &NodeProto) -> Result<Layer> {
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
        match (lo, hi) {
            (Some(l), None) if l == 0.0 => Ok(Layer::Relu),
            (Some(l), Some(h)) if l == 0.0 && h >= 3.0e38 => Ok(Layer::Relu),
            (Some(l), Some(h)) if l == 0.0 && h > 0.0 => Ok(Layer::Clip { max: h }),
            _ => bail!(
                "{}: only Clip with min 0 (a ReLU, ReLU6) is supported",
                at(n)
            ),
        }
    }

    fn pool(&mut self, n: &NodeProto) -> Result<()> {
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
    fn global_pool(&mut self, n: &NodeProto) -> Result<()> {
        let v = self.nchw(n, 0)?;
        let Shape::Maps { c, .. } = v.shape else {
            bail!("{}: its input is not a map", at(n));
        };
        let mut keep = true;
        if n.op_type == "ReduceMean" {
            let axes = match n.input.get(1).filter(|s| !s.is_empty()) {
                Some(a) => Vec::<i64>::try_from(&self.get(a, n)?.to_kind(Kind::Int64))?,
                None => attr_ints(n, "axes").unwrap_or_default(),
            };
            let mut axes: Vec<i64> = axes
                .iter()
                .map(|&a| if a < 0 { a + 4 } else { a })
                .collect();
            axes.sort();
            if axes != [2, 3] {
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
                nhwc: false,
                hwc: None,
            };
            i = self.push(Layer::Flatten, &[&pooled]);
            shape = Shape::Flat(c);
        }
        self.set(&n.output[0], i, shape);
        Ok(())
    }

    /// Flatten (axis 1) or Reshape to [N, features]: a flatten of maps (in
    /// the maps' layout), nothing for a flat value.
    fn flatten(&mut self, n: &NodeProto) -> Result<()> {
        let v = self.value(n, 0)?;
        let (c, side) = match v.shape {
            Shape::Flat(_) => return self.alias(n),
            Shape::Maps { c, side } => (c, side),
        };
        let f = c * side * side;
        if n.op_type == "Flatten" {
            if attr_i(n, "axis", 1) != 1 {
                bail!("{}: only Flatten with axis 1 is supported", at(n));
            }
        } else {
            let shape = match n.input.get(1).filter(|s| !s.is_empty()) {
                Some(s) => {
                    Vec::<i64>::try_from(&self.get(s, n)?.to_kind(Kind::Int64).reshape([-1]))?
                }
                None => attr_ints(n, "shape").ok_or_else(|| anyhow!("{}: no shape", at(n)))?,
            };
            let fits = matches!(shape.as_slice(), [b, g] if (*b == -1 || *b == 0 || *b == 1) && (*g == f || *g == -1));
            if !fits {
                bail!(
                    "{}: only a reshape to [batch, {f}] (a flatten) is supported, not {shape:?}",
                    at(n)
                );
            }
        }
        let i = self.push(Layer::Flatten, &[&v]);
        self.values.insert(
            n.output[0].clone(),
            Value {
                node: Some(i),
                shape: Shape::Flat(f),
                nhwc: false,
                hwc: v.nhwc.then_some((c, side, side)),
            },
        );
        Ok(())
    }

    /// NHWC <-> NCHW transposes of maps (tf2onnx's around a Keras network).
    fn transpose(&mut self, n: &NodeProto) -> Result<()> {
        let mut v = self.value(n, 0)?;
        let perm = attr_ints(n, "perm").unwrap_or_default();
        match (perm.as_slice(), v.nhwc, v.shape) {
            ([0, 3, 1, 2], true, Shape::Maps { .. }) => v.nhwc = false,
            ([0, 2, 3, 1], false, Shape::Maps { .. }) => v.nhwc = true,
            _ => bail!(
                "{}: only NHWC <-> NCHW transposes of maps are supported (perm {perm:?})",
                at(n)
            ),
        }
        self.values.insert(n.output[0].clone(), v);
        Ok(())
    }

    /// Gemm, or MatMul (its bias Add is read by `arithmetic`).
    fn linear(&mut self, n: &NodeProto) -> Result<()> {
        let v = self.value(n, 0)?;
        let Shape::Flat(f) = v.shape else {
            bail!("{}: a fully connected layer before any Flatten", at(n));
        };
        let w0 = self.get(required(n, 1, "weight")?, n)?.to_kind(Kind::Float);
        if w0.dim() != 2 {
            bail!(
                "{}: its weight has shape {:?}; a fully connected layer's is 2-d",
                at(n),
                w0.size()
            );
        }
        let (mut w, b): (Tensor, Tensor);
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
                Some(s) => self.get(s, n)?.reshape([-1]) * attr_f(n, "beta", 1.0),
                None => Tensor::zeros([w.size()[0]], (Kind::Float, tch::Device::Cpu)),
            };
        } else {
            w = w0.tr();
            b = Tensor::zeros([w.size()[0]], (Kind::Float, tch::Device::Cpu));
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
        if let Some((c, h, ww)) = v.hwc {
            // Columns in channels-last order -> channels-first.
            w = w
                .reshape([o, h, ww, c])
                .permute([0, 3, 1, 2])
                .reshape([o, f]);
        }
        self.n_fc += 1;
        let name = self.fresh(layer_name(n, &format!("fc{}", self.n_fc)));
        self.tensors
            .insert(format!("{name}.weight"), w.contiguous());
        self.tensors.insert(format!("{name}.bias"), b.contiguous());
        let i = self.push(Layer::linear(&name, f, o), &[&v]);
        self.set(&n.output[0], i, Shape::Flat(o));
        Ok(())
    }
}

/// A constant broadcast per channel of `v` ([], [1], [c], [1, c, 1, 1],
/// [c, 1, 1]; [c] last for channels-last) as a [c] vector.
fn per_channel(k: &Tensor, v: &Value, c: i64) -> Option<Tensor> {
    let n = k.numel() as i64;
    let sz = k.size();
    let ok = match n {
        1 => true,
        _ if n == c => match v.shape {
            Shape::Flat(_) => true,
            Shape::Maps { .. } => {
                let dims: Vec<i64> = sz.iter().copied().skip_while(|&d| d == 1).collect();
                dims.first() == Some(&c) && dims[1..].iter().all(|&d| d == 1)
            }
        },
        _ => false,
    };
    ok.then(|| k.reshape([-1]).expand([c], false).contiguous())
}

/// The value's shape as ONNX's Shape gives it (batch 1).
fn shape_tensor(v: &Value) -> Tensor {
    let dims: Vec<i64> = match (v.shape, v.nhwc) {
        (Shape::Maps { c, side }, false) => vec![1, c, side, side],
        (Shape::Maps { c, side }, true) => vec![1, side, side, c],
        (Shape::Flat(f), _) => vec![1, f],
    };
    Tensor::from_slice(&dims)
}

/// Evaluate a shape-arithmetic op on constants.
fn fold(n: &NodeProto, ins: &[Tensor]) -> Result<Tensor> {
    let x = &ins[0];
    let ints = |k: usize, name: &str| -> Option<Vec<i64>> {
        match ins.get(k) {
            Some(t) => Vec::<i64>::try_from(&t.to_kind(Kind::Int64).reshape([-1])).ok(),
            None => attr_ints(n, name),
        }
    };
    let axis = |a: i64, dims: i64| if a < 0 { a + dims } else { a };
    Ok(match n.op_type.as_str() {
        "Identity" => x.shallow_clone(),
        "Cast" => match attr_i(n, "to", 1) {
            1 | 10 | 11 => x.to_kind(Kind::Float),
            _ => x.to_kind(Kind::Int64),
        },
        "Gather" => {
            let a = axis(attr_i(n, "axis", 0), x.dim() as i64);
            let idx = ins[1].to_kind(Kind::Int64);
            let flat = idx.reshape([-1]);
            let size = x.size()[a as usize];
            let flat = flat.remainder(size);
            let g = x.index_select(a, &flat);
            if idx.dim() == 0 {
                g.squeeze_dim(a)
            } else {
                g
            }
        }
        "Unsqueeze" => {
            let mut t = x.shallow_clone();
            let mut axes = ints(1, "axes").unwrap_or_default();
            let out_dims = x.dim() as i64 + axes.len() as i64;
            axes = axes.iter().map(|&a| axis(a, out_dims)).collect();
            axes.sort();
            for a in axes {
                t = t.unsqueeze(a);
            }
            t
        }
        "Squeeze" => match ints(1, "axes") {
            Some(axes) => {
                let mut axes: Vec<i64> = axes.iter().map(|&a| axis(a, x.dim() as i64)).collect();
                axes.sort();
                axes.iter()
                    .rev()
                    .fold(x.shallow_clone(), |t, &a| t.squeeze_dim(a))
            }
            None => x.squeeze(),
        },
        "Concat" => {
            let a = axis(attr_i(n, "axis", 0), x.dim() as i64);
            let k = if ins.iter().any(|t| t.kind() == Kind::Float) {
                Kind::Float
            } else {
                Kind::Int64
            };
            Tensor::cat(&ins.iter().map(|t| t.to_kind(k)).collect::<Vec<_>>(), a)
        }
        "Slice" => {
            let starts = ints(1, "starts").unwrap_or_default();
            let ends = ints(2, "ends").unwrap_or_default();
            let axes = ints(3, "axes").unwrap_or_else(|| (0..starts.len() as i64).collect());
            let steps = ints(4, "steps").unwrap_or_else(|| vec![1; starts.len()]);
            let mut t = x.shallow_clone();
            for k in 0..starts.len() {
                let a = axis(axes[k], x.dim() as i64);
                let size = t.size()[a as usize];
                let clamp = |v: i64| {
                    if v < 0 {
                        (v + size).max(0)
                    } else {
                        v.min(size)
                    }
                };
                t = t.slice(a, clamp(starts[k]), clamp(ends[k]), steps[k].max(1));
            }
            t
        }
        "Reshape" => {
            let shape = ints(1, "shape").unwrap_or_default();
            let shape: Vec<i64> = shape
                .iter()
                .enumerate()
                .map(|(k, &d)| if d == 0 { x.size()[k] } else { d })
                .collect();
            x.reshape(shape.as_slice())
        }
        "Flatten" => x.flatten(attr_i(n, "axis", 1), -1),
        "Transpose" => x.permute(attr_ints(n, "perm").unwrap_or_default().as_slice()),
        "Mul" => x * &ins[1],
        "Add" => x + &ins[1],
        "Sub" => x - &ins[1],
        "Div" => {
            if x.kind() == Kind::Int64 {
                x.floor_divide(&ins[1])
            } else {
                x / &ins[1]
            }
        }
        op => bail!("{}: cannot fold {op}", at(n)),
    })
}
