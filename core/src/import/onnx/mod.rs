//! ONNX graphs of CNNs (the ONNX zoo's ZFNet-512, bvlc_alexnet, CaffeNet,
//! VGG16 at opsets 3–12, both `torch.onnx.export` exporters' output, and
//! tf2onnx's of Keras models) as a graph of layers: Conv (non-square
//! kernels too), Relu and Clip, Sigmoid, HardSigmoid, HardSwish, Gelu (and
//! its Erf decomposition), BatchNormalization (folded into its conv),
//! LayerNormalization over the channels (and its ReduceMean/Sub/Pow/Sqrt/Div
//! decomposition), LRN, pools, Add/Mul/Sub/Div of maps (per-channel gates
//! broadcast; x·sigmoid(x) read as SiLU) or by constants, Concat,
//! Split/Slice on channels and the Reshape/Transpose/Reshape channel
//! shuffle, channels-last stretches (Transpose around LayerNormalization and
//! MatMul on the channels), Squeeze/Unsqueeze, Flatten/Reshape, Gemm or
//! MatMul+Add, Dropout/Identity, and a final Softmax (dropped: the model's
//! output is taken before it); and vision transformers (ViT, DeiT, Swin:
//! their tokens' layouts and attention, `tokens` and `attention`).
//! Anything else is refused with the node's name and op.

use super::batchnorm::{bn_affine, fold_bn};
use crate::net::{Layer, Node, Shape, Window};
use anyhow::{anyhow, bail, Context, Result};
use onnx_protobuf::{AttributeProto, Message, ModelProto, NodeProto, TensorProto};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use tch::{Kind, Tensor};

mod arith;
mod attention;
mod consts;
mod conv;
mod linear;
mod modern;
mod norm;
mod pool;
mod proto;
mod reshape;
mod rewrite;
mod tokens;

use conv::{layer_name, window};
use norm::per_channel;
use proto::{input_side, tensor};
use reshape::{fold, perm, shape_tensor};
use std::rc::Rc;
use tokens::View;

/// How errors name a node: `node "conv1" (Conv)`.
fn at(n: &NodeProto) -> String {
    format!("node {:?} ({})", n.name, n.op_type)
}

pub struct Graph {
    /// The nodes, with the nodes each reads (where not the one before it)
    /// and the units: every node with maps, named by its ONNX output.
    pub nodes: Vec<Node>,
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
    /// Maps reshaped to [N, g, C/g, H, W] (a channel shuffle's first
    /// step): the groups, and whether the two group axes were swapped.
    grouped: Option<(i64, bool)>,
    /// A transformer's tokens (or a conv's maps) in another layout than
    /// the node's output: see `tokens`.
    view: Option<Rc<View>>,
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
    let nodes = rewrite::fuse(&g.node, &mut consts, dir)?;
    let mut uses: HashMap<String, usize> = HashMap::new();
    for n in &nodes {
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
        nodes: vec![],
        tensors: HashMap::new(),
        names: HashSet::new(),
        last: None,
        n_conv: 0,
        n_fc: 0,
        flattened: HashMap::new(),
        attended: false,
        normed: HashMap::new(),
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
            grouped: None,
            view: None,
        },
    );
    if r.uses.get(&input.name).copied().unwrap_or(0) > 1 {
        // Several nodes read the image: node 0 passes it on to them.
        let v = r.values[&input.name].clone();
        r.push(Layer::Dropout { p: 0.0 }, &[&v]);
    }
    for n in &nodes {
        // libtorch raises (a panic in tch) where shapes a file declares do
        // not fit; the reader checks what it indexes, this catches the rest.
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| r.node(n)));
        match read {
            Ok(done) => done?,
            Err(e) => {
                let why = e
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| e.downcast_ref::<&str>().copied())
                    .unwrap_or("an internal error");
                let why = why.lines().next().unwrap_or(why);
                bail!("{}: its shapes do not fit ({why})", at(n));
            }
        }
    }
    Ok(Graph {
        nodes: r.nodes,
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
    nodes: Vec<Node>,
    tensors: HashMap<String, Tensor>,
    names: HashSet<String>,
    /// The last node added.
    last: Option<usize>,
    n_conv: usize,
    n_fc: usize,
    /// Flatten nodes of 1x1 maps, with the maps they read (a Reshape or
    /// Unsqueeze back to maps reads those).
    flattened: HashMap<usize, Value>,
    /// An attention node was added since the last residual Add of tokens
    /// (the next is the attention's, not a block's end).
    attended: bool,
    /// Values divided by their own norm over their last axis (Swin V2's q
    /// and k), with their index views when divided.
    normed: HashMap<String, Tensor>,
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
    "Expand",
    "ConstantOfShape",
    "Equal",
    "Where",
    "Sqrt",
    "Mod",
    "ScatterND",
    "Not",
    "Range",
    "Pow",
    "Relu",
    "Sigmoid",
    "Exp",
    "Clip",
    "MatMul",
    "GatherND",
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
        let v = self.raw(n, k)?;
        if v.view.is_some() {
            bail!(
                "{}: reads a transformer's tokens rearranged ({}); zfvis follows Reshape, Transpose, Gather, Slice, Split, Squeeze, Unsqueeze, linear layers and attention on them",
                at(n),
                tokens::describe(&v)
            );
        }
        Ok(v)
    }

    /// [`Reader::value`], or a view of a node's output (see `tokens`).
    fn raw(&self, n: &NodeProto, k: usize) -> Result<Value> {
        let name = required(n, k, "data")?;
        self.values.get(name).cloned().ok_or_else(|| {
            anyhow!("{}: its input {name:?} is neither a constant nor an output of a node read before it", at(n))
        })
    }

    /// Add `l` reading `from`.
    fn push(&mut self, l: Layer, from: &[&Value]) -> usize {
        let i = self.nodes.len();
        let srcs: Vec<Option<usize>> = from.iter().map(|v| v.node).collect();
        let chained = match srcs.as_slice() {
            [None] => i == 0,
            [Some(j)] => *j + 1 == i,
            _ => false,
        };
        // Only node 0 reads the image (see `read`).
        self.nodes.push(Node {
            op: l,
            inputs: (!chained).then(|| srcs.iter().map(|s| s.unwrap_or(0)).collect()),
            name: None,
        });
        self.last = Some(i);
        i
    }

    /// Name `out` the value of node `i` with shape `shape` (a unit when it has maps).
    fn set(&mut self, out: &str, i: usize, shape: Shape) {
        self.set_layout(out, i, shape, false);
    }

    /// [`Reader::set`] for a value the graph sees channels-last when `nhwc`.
    fn set_layout(&mut self, out: &str, i: usize, shape: Shape, nhwc: bool) {
        if matches!(shape, Shape::Maps { .. }) {
            self.nodes[i].name = Some(out.to_string());
        }
        self.values.insert(
            out.to_string(),
            Value {
                node: Some(i),
                shape,
                nhwc,
                hwc: None,
                grouped: None,
                view: None,
            },
        );
    }

    /// The nodes node `j` reads (None: the image).
    fn reads(&self, j: usize) -> Vec<Option<usize>> {
        match &self.nodes[j].inputs {
            Some(v) => v.iter().map(|&k| Some(k)).collect(),
            None => vec![j.checked_sub(1)],
        }
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
        let out = n
            .output
            .first()
            .cloned()
            .ok_or_else(|| anyhow!("{}: no output", at(n)))?;
        if n.op_type == "Constant" {
            if let Some(t) = attr(n, "value").and_then(|a| a.t.as_ref()) {
                self.consts.insert(out, tensor(t, self.dir)?);
                return Ok(());
            }
            bail!("{}: only tensor-valued constants are supported", at(n));
        }
        let ins: Vec<&String> = n.input.iter().filter(|i| !i.is_empty()).collect();
        if n.op_type == "Shape" {
            let shape = match self.consts.get(required(n, 0, "data")?) {
                Some(t) => Tensor::from_slice(&t.size()),
                None => shape_tensor(&self.raw(n, 0)?),
            };
            self.consts.insert(out, shape);
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
        if self.tokens(n)? {
            return Ok(());
        }
        match n.op_type.as_str() {
            "Conv" => self.conv(n),
            "BatchNormalization" => self.batch_norm(n),
            "Gemm" | "MatMul" => self.linear(n),
            "Relu" => self.activation(n, Layer::Relu),
            "Sigmoid" => self.activation(n, Layer::Sigmoid),
            "HardSwish" => self.activation(n, Layer::HardSwish),
            "HardSigmoid" => self.activation(
                n,
                Layer::HardSigmoid {
                    alpha: attr_f(n, "alpha", 0.2),
                    beta: attr_f(n, "beta", 0.5),
                },
            ),
            "Gelu" => {
                let tanh = attr(n, "approximate").is_some_and(|a| a.s == b"tanh");
                self.activation(n, Layer::Gelu { tanh })
            }
            "LayerNormalization" => self.layer_norm(n),
            "Squeeze" | "Unsqueeze" => self.squeeze(n),
            "Slice" => self.slice(n),
            "Split" => self.split(n),
            "Gather" => self.gather(n),
            "Clip" => {
                let l = self.clip(n)?;
                self.activation(n, l)
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
            op => bail!("{}: op {op} is not supported (zfvis reads CNNs and vision transformers: Conv, Relu, Clip, BatchNormalization, pools, Add, Concat, Gemm, LayerNormalization, attention…)", at(n)),
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
}
