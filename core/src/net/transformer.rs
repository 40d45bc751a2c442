//! The transformers' ops (ViT's tokens and self-attention, Swin's window
//! attention and patch merging) on tensors, as torchvision computes them
//! (Swin's on [B, C, S, S] maps rather than its [B, S, S, C]). The ops,
//! their parameters and shape rules are `ops.rs`'s.

use tch::{Kind, Tensor};

/// Patch tokens from [B, C, S, S] maps: the `learned` tokens ([1, P, C])
/// first, plus the position embedding `pos` ([1, P + S², C]).
pub fn embed(h: &Tensor, learned: &Tensor, pos: &Tensor) -> Tensor {
    let s = h.size();
    let patches = h.flatten(2, -1).transpose(1, 2);
    let l = learned.size();
    let learned = learned.expand([s[0], l[1], s[1]], false);
    Tensor::cat(&[learned, patches], 1) + pos
}

/// Multi-head self-attention of tokens holding [q | k | v]: [B, N, C].
pub fn attention(h: &Tensor, heads: i64) -> Tensor {
    let (q, k, v) = heads_of(h, heads);
    let s = h.size();
    Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, false, None, false)
        .transpose(1, 2)
        .reshape([s[0], s[1], s[2] / 3])
}

/// The patch tokens after `prefix` learned ones as [B, C, S, S] maps.
pub fn grid(h: &Tensor, prefix: i64) -> Tensor {
    let s = h.size();
    let side = ((s[1] - prefix) as f64).sqrt().round() as i64;
    h.narrow(1, prefix, s[1] - prefix)
        .transpose(1, 2)
        .reshape([s[0], s[2], side, side])
}

/// q, k and v of tokens holding [q | k | v], [B, N, 3C], each split in
/// `heads` heads: [B, heads, N, C / heads] (PyTorch's MultiheadAttention).
pub fn heads_of(qkv: &Tensor, heads: i64) -> (Tensor, Tensor, Tensor) {
    let s = qkv.size();
    let d = s[2] / 3 / heads;
    let t = qkv
        .reshape([s[0], s[1], 3, heads, d])
        .permute([2, 0, 3, 1, 4]);
    (t.get(0), t.get(1), t.get(2))
}

/// The attention weights of tokens holding [q | k | v]: softmax(q kᵀ / √d)
/// in each head, [B, heads, N, N].
pub fn attention_weights(qkv: &Tensor, heads: i64) -> Tensor {
    let (q, k, _) = heads_of(qkv, heads);
    let d = q.size()[3];
    (q.matmul(&k.transpose(-2, -1)) / (d as f64).sqrt()).softmax(-1, q.kind())
}

/// The relative position index of a window's positions, [n, n] with n =
/// window²: (dy + w − 1)·(2w − 1) + (dx + w − 1).
pub fn relative_index(w: i64, dev: tch::Device) -> Tensor {
    let n = w * w;
    let mut idx = Vec::with_capacity((n * n) as usize);
    for i in 0..n {
        for j in 0..n {
            let (dy, dx) = (i / w - j / w, i % w - j % w);
            idx.push((dy + w - 1) * (2 * w - 1) + dx + w - 1);
        }
    }
    Tensor::from_slice(&idx).view([n, n]).to_device(dev)
}

/// The shifted windows' mask, [windows, n, n]: −100 between positions
/// that came from different regions of the rolled maps, 0 within one.
pub fn shift_mask(side: i64, w: i64, shift: i64, dev: tch::Device) -> Tensor {
    let bounds = [0, side - w, side - shift, side];
    let region = |v: i64| (0..3).find(|&k| v < bounds[k + 1]).unwrap_or(2);
    let per = side / w;
    let n = w * w;
    let mut ids = vec![0f32; (per * per * n) as usize];
    for y in 0..side {
        for x in 0..side {
            let win = (y / w) * per + x / w;
            let pos = (y % w) * w + x % w;
            ids[(win * n + pos) as usize] = (region(y) * 3 + region(x)) as f32;
        }
    }
    let m = Tensor::from_slice(&ids).view([per * per, n]).to_device(dev);
    let d = m.unsqueeze(1) - m.unsqueeze(2);
    d.ne(0.0).to_kind(Kind::Float) * -100.0
}

/// Maps [B, C, S, S] rolled by −`shift` (the shift already 0 where one
/// window covers them) and split in windows: [B·windows, w², C], each
/// window's positions row-major (torchvision's `shifted_window_attention`).
pub fn windows(h: &Tensor, w: i64, shift: i64) -> Tensor {
    let s = h.size();
    let (b, c, side) = (s[0], s[1], s[2]);
    let per = side / w;
    let mut x = h.permute([0, 2, 3, 1]);
    if shift > 0 {
        x = x.roll([-shift, -shift], [1, 2]);
    }
    x.reshape([b, per, w, per, w, c])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([b * per * per, w * w, c])
}

/// Window attention of maps holding [q | k | v] with the relative position
/// bias `table` and (`cosine`, Swin V2) the logit `scale`; see
/// `Layer::WindowAttention`.
pub fn window_attention(
    h: &Tensor,
    table: &Tensor,
    scale: &Tensor,
    heads: i64,
    w: i64,
    shift: i64,
    cosine: bool,
) -> Tensor {
    let s = h.size();
    let (b, c3, side) = (s[0], s[1], s[2]);
    let c = c3 / 3;
    let shift = if w >= side { 0 } else { shift };
    let (per, n) = (side / w, w * w);
    let (q, k, v) = heads_of(&windows(h, w, shift), heads);
    let d = c / heads;
    let attn = if cosine {
        let norm = |t: &Tensor| {
            let l2 = t
                .norm_scalaropt_dim(2, [-1i64].as_slice(), true)
                .clamp_min(1e-12);
            t / l2
        };
        let scale = scale.clamp_max(100f64.ln()).exp().view([1, heads, 1, 1]);
        norm(&q).matmul(&norm(&k).transpose(-2, -1)) * scale
    } else {
        (q * (d as f64).powf(-0.5)).matmul(&k.transpose(-2, -1))
    };
    let idx = relative_index(w, h.device()).view([-1]);
    let bias = table
        .index_select(0, &idx)
        .view([n, n, heads])
        .permute([2, 0, 1])
        .unsqueeze(0);
    let mut attn = attn + bias;
    if shift > 0 {
        let mask = shift_mask(side, w, shift, h.device());
        attn = (attn.view([b, per * per, heads, n, n]) + mask.view([1, per * per, 1, n, n]))
            .view([b * per * per, heads, n, n]);
    }
    let o = attn
        .softmax(-1, Kind::Float)
        .matmul(&v)
        .transpose(1, 2)
        .reshape([b, per, per, w, w, c])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([b, side, side, c]);
    let o = if shift > 0 {
        o.roll([shift, shift], [1, 2])
    } else {
        o
    };
    o.permute([0, 3, 1, 2])
}

/// Patch merging: 2x2 blocks of positions to 4C channels.
pub fn merge(h: &Tensor) -> Tensor {
    let side = h.size()[2];
    let x = if side % 2 == 1 {
        h.constant_pad_nd([0, 1, 0, 1])
    } else {
        h.shallow_clone()
    };
    let at = |dy: i64, dx: i64| x.slice(2, dy, None::<i64>, 2).slice(3, dx, None::<i64>, 2);
    Tensor::cat(&[at(0, 0), at(1, 0), at(0, 1), at(1, 1)], 1)
}
