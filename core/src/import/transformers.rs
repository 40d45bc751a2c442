//! torchvision's vision transformers as graphs, built from their state
//! dicts: ViT-B/16, B/32 and L/16, and Swin T/S/B and V2 T/S/B (below). The patch embedding is a conv; the
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
use tch::{Device, Kind, Tensor};

type Shapes = HashMap<String, Vec<i64>>;

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
        g.layer_norm(&format!("{p}.ln_1"), 1e-6);
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
        g.layer_norm(&format!("{p}.ln_2"), 1e-6);
        linear(&mut g, &format!("{p}.mlp.0"), None)?;
        g.then(Layer::Gelu { tanh: false });
        linear(&mut g, &format!("{p}.mlp.3"), None)?;
        g.add(mid);
        let out = g.last();
        g.then(Layer::Grid { prefix });
        g.unit(&p);
        g.from(out, c);
    }
    g.layer_norm("encoder.ln", 1e-6);
    g.then(Layer::Token { index: 0 });
    if g.has("heads.pre_logits.weight") {
        bail!("a ViT with a pre-logits layer (representation_size) is not supported");
    }
    g.then(Layer::linear("heads.head", c, classes));
    let mut lay = g.layout(1e-5);
    lay.input_size = Some(side * patch);
    Ok(lay)
}

/// A window attention's tensors as the op reads them: the relative
/// position bias table ([(2w − 1)², heads]; Swin V2's computed from its
/// continuous position-bias MLP, 16·sigmoid, as torchvision does each
/// forward) and the logit scale ([heads]; zeros for Swin V1).
pub fn window_tensors(
    take: &mut impl FnMut(&str, &[i64]) -> Result<Tensor>,
    name: &str,
    heads: i64,
    w: i64,
    cosine: bool,
) -> Result<(Tensor, Tensor)> {
    let rows = (2 * w - 1) * (2 * w - 1);
    let f = (Kind::Float, Device::Cpu);
    if !cosine {
        let table = take(
            &format!("{name}.relative_position_bias_table"),
            &[rows, heads],
        )?;
        return Ok((table, Tensor::zeros([heads], f)));
    }
    let scale = take(&format!("{name}.logit_scale"), &[heads, 1, 1])?.view([heads]);
    let w1 = take(&format!("{name}.cpb_mlp.0.weight"), &[CPB_HIDDEN, 2])?;
    let b1 = take(&format!("{name}.cpb_mlp.0.bias"), &[CPB_HIDDEN])?;
    let w2 = take(&format!("{name}.cpb_mlp.2.weight"), &[heads, CPB_HIDDEN])?;
    // torchvision's relative_coords_table, in float32 as it computes it.
    let r = Tensor::arange_start(-(w - 1), w, f);
    let grid = Tensor::stack(&Tensor::meshgrid_indexing(&[&r, &r], "ij"), -1);
    let t = grid / (w - 1) as f64 * 8.0;
    let t = t.sign() * (t.abs() + 1.0).log2() / 3.0;
    let table = t
        .view([rows, 2])
        .linear(&w1, Some(&b1))
        .relu()
        .linear::<Tensor>(&w2, None);
    Ok((table.sigmoid() * 16.0, scale))
}

/// The hidden width of Swin V2's continuous position-bias MLP.
const CPB_HIDDEN: i64 = 512;

/// Swin `t`, `s`, `b`, `v2_t`, `v2_s`, `v2_b` (torchvision's
/// `SwinTransformer`, on [B, C, S, S] maps rather than its [B, S, S, C]):
/// a 4x4 stride-4 patch embedding and layer norm; stages of blocks, each
/// layer norm, (shifted) window attention, residual, layer norm, MLP,
/// residual (V2: the norms after the attention and the MLP); patch merging
/// between stages; layer norm, global pooling and the head. The maps are
/// padded to a multiple of the window around each attention and cut back.
pub fn swin(member: &str, shapes: &Shapes, input_size: i64, classes: i64) -> Result<Layout> {
    let v2 = member.starts_with("v2_");
    let mut g = Builder::reading(shapes);
    g.conv("features.0.0", None, 4, Some(0), None)?;
    g.layer_norm("features.0.2", 1e-5);
    g.unit("features.0");
    let mut side = input_size / 4;
    let mut s = 1;
    while g.has(&format!("features.{s}.0.norm1.weight")) {
        if s > 1 {
            let m = format!("features.{}", s - 1);
            g.then(Layer::PatchMerge);
            g.c *= 4;
            side = (side + 1) / 2;
            if v2 {
                g.conv(&format!("{m}.reduction"), None, 1, Some(0), None)?;
                g.layer_norm(&format!("{m}.norm"), 1e-5);
            } else {
                g.layer_norm(&format!("{m}.norm"), 1e-5);
                g.conv(&format!("{m}.reduction"), None, 1, Some(0), None)?;
            }
            g.unit(&m);
        }
        let stage = format!("features.{s}");
        for b in 0..g.count(&stage) {
            swin_block(&mut g, &format!("{stage}.{b}"), side, b % 2 == 1, v2)?;
        }
        s += 2;
    }
    if s == 1 {
        bail!("missing tensors features.1.0.*");
    }
    g.layer_norm("norm", 1e-5);
    let c = g.c;
    let mut lay = g.finish(c, "head", classes, 0.0);
    lay.input_size = Some(input_size);
    Ok(lay)
}

/// One Swin block `p` on maps of `side`; `shifted`: the odd blocks' shift
/// of half a window.
fn swin_block(g: &mut Builder, p: &str, side: i64, shifted: bool, v2: bool) -> Result<()> {
    let a = format!("{p}.attn");
    let (window, heads) = if v2 {
        (8, g.shape(&format!("{a}.logit_scale"))?[0])
    } else {
        let s = g.shape(&format!("{a}.relative_position_bias_table"))?;
        let w = ((s[0] as f64).sqrt().round() as i64 + 1) / 2;
        (w, s[1])
    };
    let (input, c) = (g.last(), g.c);
    if !v2 {
        g.layer_norm(&format!("{p}.norm1"), 1e-5);
    }
    let pad = (window - side % window) % window;
    if pad > 0 {
        g.then(Layer::Pad {
            pads: [0, 0, pad, pad],
        });
    }
    g.conv(&format!("{a}.qkv"), None, 1, Some(0), None)?;
    g.then(Layer::WindowAttention {
        name: a.clone(),
        c,
        heads,
        window,
        shift: if shifted { window / 2 } else { 0 },
        cosine: v2,
    });
    g.c = c;
    g.conv(&format!("{a}.proj"), None, 1, Some(0), None)?;
    if pad > 0 {
        g.then(Layer::Crop { side });
    }
    if v2 {
        g.layer_norm(&format!("{p}.norm1"), 1e-5);
    }
    g.add(input);
    let mid = g.last();
    if !v2 {
        g.layer_norm(&format!("{p}.norm2"), 1e-5);
    }
    g.conv(
        &format!("{p}.mlp.0"),
        None,
        1,
        Some(0),
        Some(Layer::Gelu { tanh: false }),
    )?;
    g.conv(&format!("{p}.mlp.3"), None, 1, Some(0), None)?;
    if v2 {
        g.layer_norm(&format!("{p}.norm2"), 1e-5);
    }
    g.add(mid);
    g.unit(p);
    Ok(())
}
