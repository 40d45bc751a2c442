//! torchvision's vision transformers as graphs, built from their state
//! dicts: ViT-B/16, B/32 and L/16. The patch embedding is a conv; the
//! tokens (class token first) get the position embedding; each encoder
//! block is layer norm, multi-head self-attention (its input projection, the
//! attention, its output projection), the residual, layer norm, the MLP
//! (linear, GELU, linear) and the residual. Each block's output is also
//! read as maps over the patch grid (a grid node, the class token dropped):
//! that grid is the block's unit. Widths, depths and the patch size are read
//! off the file's tensor shapes; the heads (not in a state dict) come from
//! torchvision's configurations.

use super::builder::Builder;
use super::layout::Layout;
use crate::net::Layer;
use anyhow::{bail, Result};
use std::collections::HashMap;

type Shapes = HashMap<String, Vec<i64>>;

/// Layer normalisation over a token's channels, as torchvision's ViT has it.
fn layer_norm(g: &mut Builder, name: &str) {
    g.then(Layer::ChannelNorm {
        name: name.to_string(),
        c: g.c,
        eps: 1e-6,
    });
}

/// A linear layer `name` on the tokens (tensors named `weight`, `bias`
/// when given, else `{name}.weight`/`.bias`), `out` read off its weight.
fn linear(g: &mut Builder, name: &str, tensors: Option<(&str, &str)>) -> Result<()> {
    let w = tensors.map_or(format!("{name}.weight"), |t| t.0.to_string());
    let s = g.shape(&w)?;
    let [out, i] = *s else {
        bail!("tensor {w}: expected a linear weight, found shape {s:?}");
    };
    if i != g.c {
        bail!("tensor {w}: expected {} inputs, found {i}", g.c);
    }
    g.then(Layer::Linear {
        name: name.to_string(),
        in_f: g.c,
        out,
        weight: tensors.map(|t| t.0.to_string()),
        bias: tensors.map(|t| t.1.to_string()),
    });
    g.c = out;
    Ok(())
}

/// ViT `b_16`, `b_32`, `l_16` (torchvision's `VisionTransformer`).
pub fn vit(member: &str, shapes: &Shapes, classes: i64) -> Result<Layout> {
    let heads = match member {
        "b_16" | "b_32" => 12,
        "l_16" | "l_32" | "h_14" => 16,
        o => bail!("unknown ViT {o:?}: expected b_16, b_32 or l_16"),
    };
    let mut g = Builder::reading(shapes);
    let patch = match *g.shape("conv_proj.weight")? {
        [_, 3, p, q] if p == q => p,
        ref s => bail!("tensor conv_proj.weight: expected a square patch embedding, found {s:?}"),
    };
    g.conv("conv_proj", None, patch, Some(0), None)?;
    let c = g.c;
    let prefix = match *g.shape("class_token")? {
        [1, p, cc] if cc == c => p,
        ref s => bail!("tensor class_token: expected [1, 1, {c}], found {s:?}"),
    };
    let n = match *g.shape("encoder.pos_embedding")? {
        [1, n, cc] if cc == c && n > prefix => n,
        ref s => bail!("tensor encoder.pos_embedding: expected [1, tokens, {c}], found {s:?}"),
    };
    let side = ((n - prefix) as f64).sqrt().round() as i64;
    if side * side != n - prefix {
        bail!("tensor encoder.pos_embedding: {n} tokens are not {prefix} + a square grid");
    }
    g.then(Layer::Embed {
        name: "encoder".into(),
        c,
        prefix,
        side,
        weight: "class_token".into(),
        bias: "encoder.pos_embedding".into(),
    });
    let blocks = (0..)
        .take_while(|i| g.has(&format!("encoder.layers.encoder_layer_{i}.ln_1.weight")))
        .count();
    if blocks == 0 {
        bail!("missing tensors encoder.layers.encoder_layer_0.*");
    }
    if c % heads != 0 {
        bail!("{c} channels do not split in {heads} heads");
    }
    for b in 0..blocks {
        let p = format!("encoder.layers.encoder_layer_{b}");
        let input = g.last();
        layer_norm(&mut g, &format!("{p}.ln_1"));
        let a = format!("{p}.self_attention");
        let (w, bias) = (format!("{a}.in_proj_weight"), format!("{a}.in_proj_bias"));
        linear(&mut g, &format!("{a}.in_proj"), Some((&w, &bias)))?;
        if g.c != 3 * c {
            bail!(
                "tensor {w}: expected {} rows ([q | k | v]), found {}",
                3 * c,
                g.c
            );
        }
        g.then(Layer::Attention { heads });
        g.c = c;
        linear(&mut g, &format!("{a}.out_proj"), None)?;
        g.add(input);
        let mid = g.last();
        layer_norm(&mut g, &format!("{p}.ln_2"));
        linear(&mut g, &format!("{p}.mlp.0"), None)?;
        g.then(Layer::Gelu { tanh: false });
        linear(&mut g, &format!("{p}.mlp.3"), None)?;
        g.add(mid);
        let out = g.last();
        g.then(Layer::Grid { prefix });
        g.unit(&p);
        g.from(out, c);
    }
    layer_norm(&mut g, "encoder.ln");
    g.then(Layer::Token { index: 0 });
    if g.has("heads.pre_logits.weight") {
        bail!("a ViT with a pre-logits layer (representation_size) is not supported");
    }
    g.then(Layer::linear("heads.head", c, classes));
    let mut lay = g.layout(1e-5);
    lay.input_size = Some(side * patch);
    Ok(lay)
}
