//! Decompositions exporters write, fused back into the op before the graph
//! is read: GELU as `x·0.5·(1 + erf(x/√2))` (TorchScript's export) into
//! `Gelu`, layer normalisation as ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div
//! (with Mul/Add by its weight and bias; opsets before 17, tf2onnx) into
//! `LayerNormalization` over the axis it reduces.

use super::proto::tensor;
use super::{attr, attr_ints};
use anyhow::Result;
use onnx_protobuf::{AttributeProto, NodeProto};
use std::collections::HashMap;
use std::path::Path;
use tch::{Kind, Tensor};

/// Where each value is made and read.
struct Links<'a> {
    nodes: &'a [NodeProto],
    producer: HashMap<&'a str, usize>,
    consumers: HashMap<&'a str, Vec<usize>>,
    consts: &'a HashMap<String, Tensor>,
}

impl<'a> Links<'a> {
    /// The one node reading `value`, if exactly one does.
    fn only_reader(&self, value: &str) -> Option<(usize, &'a NodeProto)> {
        match self.consumers.get(value).map(Vec::as_slice) {
            Some([j]) => Some((*j, &self.nodes[*j])),
            _ => None,
        }
    }

    /// A one-value constant's value.
    fn scalar(&self, name: &str) -> Option<f64> {
        self.consts
            .get(name)
            .filter(|t| t.numel() == 1)
            .map(|t| t.to_kind(Kind::Double).reshape([-1]).double_value(&[0]))
    }

    /// The other input of a two-input node `n` besides `value`.
    fn other<'n>(n: &'n NodeProto, value: &str) -> Option<&'n str> {
        match n.input.as_slice() {
            [a, b] if a == value => Some(b),
            [a, b] if b == value => Some(a),
            _ => None,
        }
    }

    /// The only reader of `value` when it is an `op` whose other input is
    /// the constant `want` (within 1e-4).
    fn by_const(&self, value: &str, op: &str, want: f64) -> Option<(usize, &'a NodeProto)> {
        let (j, n) = self.only_reader(value)?;
        let k = Self::other(n, value)?;
        (n.op_type == op && self.scalar(k).is_some_and(|v| (v - want).abs() < 1e-4))
            .then_some((j, n))
    }

    /// ReduceMean's axes (attribute before opset 18, input after).
    fn axes(&self, n: &NodeProto) -> Option<Vec<i64>> {
        match n.input.get(1).filter(|s| !s.is_empty()) {
            Some(s) => {
                Vec::<i64>::try_from(&self.consts.get(s)?.to_kind(Kind::Int64).reshape([-1])).ok()
            }
            None => attr_ints(n, "axes"),
        }
    }
}

fn node(
    op: &str,
    name: &str,
    inputs: Vec<String>,
    output: &str,
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    let mut n = NodeProto::new();
    n.op_type = op.to_string();
    n.name = name.to_string();
    n.input = inputs;
    n.output = vec![output.to_string()];
    n.attribute = attrs;
    n
}

fn int_attr(name: &str, v: i64) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.to_string();
    a.i = v;
    a.type_ = onnx_protobuf::attribute_proto::AttributeType::INT.into();
    a
}

fn float_attr(name: &str, v: f64) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.to_string();
    a.f = v as f32;
    a.type_ = onnx_protobuf::attribute_proto::AttributeType::FLOAT.into();
    a
}

/// The graph's nodes with the decompositions fused (Constant nodes' values
/// are added to `consts`).
pub(super) fn fuse(
    nodes: &[NodeProto],
    consts: &mut HashMap<String, Tensor>,
    dir: &Path,
) -> Result<Vec<NodeProto>> {
    for n in nodes.iter().filter(|n| n.op_type == "Constant") {
        if let (Some(t), Some(out)) = (
            attr(n, "value").and_then(|a| a.t.as_ref()),
            n.output.first(),
        ) {
            consts.insert(out.clone(), tensor(t, dir)?);
        }
    }
    let mut links = Links {
        nodes,
        producer: HashMap::new(),
        consumers: HashMap::new(),
        consts,
    };
    for (i, n) in nodes.iter().enumerate() {
        for o in &n.output {
            links.producer.insert(o, i);
        }
        for v in n.input.iter().filter(|s| !s.is_empty()) {
            links.consumers.entry(v).or_default().push(i);
        }
    }
    let mut drop = vec![false; nodes.len()];
    let mut replace: HashMap<usize, NodeProto> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        let found = match n.op_type.as_str() {
            "Erf" => gelu(&links, i),
            "ReduceMean" => layer_norm(&links, i),
            _ => None,
        };
        if let Some((gone, last, fused)) = found {
            if gone
                .iter()
                .chain([&last])
                .any(|&j| drop[j] || replace.contains_key(&j))
            {
                continue;
            }
            for j in gone {
                drop[j] = true;
            }
            replace.insert(last, fused);
        }
    }
    Ok(nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| match replace.remove(&i) {
            Some(f) => Some(f),
            None => (!drop[i]).then(|| n.clone()),
        })
        .collect())
}

/// What a match gives: the nodes it removes, the node it replaces, and the
/// fused node.
type Fused = (Vec<usize>, usize, NodeProto);

/// `Div(x, √2) → Erf → Add(1) → Mul(x) → Mul(0.5)` from Erf node `e`.
fn gelu(l: &Links, e: usize) -> Option<Fused> {
    let erf = &l.nodes[e];
    let pre = *l.producer.get(erf.input.first()?.as_str())?;
    let p = &l.nodes[pre];
    let x = match (p.op_type.as_str(), l.scalar(p.input.get(1)?)) {
        ("Div", Some(v)) if (v - std::f64::consts::SQRT_2).abs() < 1e-4 => p.input[0].clone(),
        ("Mul", Some(v)) if (v - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-4 => {
            p.input[0].clone()
        }
        _ => return None,
    };
    l.only_reader(&p.output[0])?;
    let (a, add) = l.by_const(&erf.output[0], "Add", 1.0)?;
    let (m, mul) = l.only_reader(&add.output[0])?;
    if mul.op_type != "Mul" || Links::other(mul, &add.output[0])? != x {
        return None;
    }
    let (h, half) = l.by_const(&mul.output[0], "Mul", 0.5)?;
    let fused = node("Gelu", &erf.name, vec![x], &half.output[0], vec![]);
    Some((vec![pre, e, a, m], h, fused))
}

/// `ReduceMean(x) → Sub(x, ·) → Pow(2) → ReduceMean → Add(eps) → Sqrt →
/// Div(Sub's output, ·)`, then optionally `Mul(weight)` and `Add(bias)`,
/// from the first ReduceMean `r`: a layer norm over its one axis.
fn layer_norm(l: &Links, r: usize) -> Option<Fused> {
    let mean = &l.nodes[r];
    let x = mean.input.first()?.clone();
    let axes = l.axes(mean)?;
    let [axis] = axes.as_slice() else { return None };
    let sub_at = l.consumers.get(mean.output[0].as_str())?;
    let [s] = sub_at.as_slice() else { return None };
    let sub = &l.nodes[*s];
    if sub.op_type != "Sub" || sub.input.first()? != &x {
        return None;
    }
    let d = sub.output[0].as_str();
    let readers = l.consumers.get(d)?;
    let (&pw, &dv) = match readers.as_slice() {
        [a, b] if l.nodes[*a].op_type == "Pow" => (a, b),
        [a, b] if l.nodes[*b].op_type == "Pow" => (b, a),
        _ => return None,
    };
    let pow = &l.nodes[pw];
    if l.scalar(pow.input.get(1)?)
        .is_none_or(|v| (v - 2.0).abs() > 1e-6)
    {
        return None;
    }
    let (r2, var) = l.only_reader(&pow.output[0])?;
    if var.op_type != "ReduceMean" || l.axes(var)? != axes {
        return None;
    }
    let (ae, add_eps) = l.only_reader(&var.output[0])?;
    let eps = l.scalar(Links::other(add_eps, &var.output[0])?)?;
    if add_eps.op_type != "Add" {
        return None;
    }
    let (sq, sqrt) = l.only_reader(&add_eps.output[0])?;
    let div = &l.nodes[dv];
    if sqrt.op_type != "Sqrt"
        || div.op_type != "Div"
        || div.input.as_slice() != [d, sqrt.output[0].as_str()]
    {
        return None;
    }
    let mut gone = vec![r, *s, pw, r2, ae, sq];
    let (mut last, mut out) = (dv, div.output[0].clone());
    let mut weight = String::new();
    let mut bias = String::new();
    let is_const = |v: &str| l.consts.contains_key(v);
    if let Some((j, m)) = l.only_reader(&out).filter(|(_, m)| m.op_type == "Mul") {
        if let Some(w) = Links::other(m, &out).filter(|w| is_const(w)) {
            gone.push(last);
            (last, out, weight) = (j, m.output[0].clone(), w.to_string());
            if let Some((j, a)) = l.only_reader(&out).filter(|(_, a)| a.op_type == "Add") {
                if let Some(b) = Links::other(a, &out).filter(|b| is_const(b)) {
                    gone.push(last);
                    (last, out, bias) = (j, a.output[0].clone(), b.to_string());
                }
            }
        }
    }
    let attrs = vec![
        int_attr("axis", *axis),
        float_attr("epsilon", eps),
        // Over this one axis (ONNX's op normalises over every axis from it).
        int_attr("zfvis_one_axis", 1),
    ];
    let fused = node(
        "LayerNormalization",
        &mean.name,
        vec![x, weight, bias],
        &out,
        attrs,
    );
    Some((gone, last, fused))
}
