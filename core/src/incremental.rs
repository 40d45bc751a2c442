//! The occlusion experiment's exact incremental evaluator (paper.md §5.2):
//! an occluded image differs from the unoccluded one only inside the square,
//! so each node of the network is recomputed only over the window of its
//! output that can see the change; everything else is the unoccluded pass.
//! Works on graphs: a spatial node (conv, pool) recomputes the outputs whose
//! windows reach the changed region, a pointwise node (ReLU, affine, LRN)
//! keeps the region, an add or concat recomputes the union of its inputs'
//! regions. From the last maps on (global pooling, fc) the network runs whole.

use crate::net::{Layer, Net, Window};
use tch::{Kind, Tensor};

/// Whether the evaluator is exact for this network: no padded or ceil-mode
/// average pooling that does not count its padding, only spatial, pointwise
/// and merge nodes before the last maps, and nothing after them reading
/// earlier nodes.
pub fn applies(net: &Net) -> bool {
    let spec = &net.spec;
    let last = spec.last_maps_node();
    let nodes_ok = spec.ops().take(last + 1).all(|l| match l {
        Layer::AvgPool {
            pad,
            ceil_mode,
            count_include_pad,
            ..
        } => !(*pad > 0 && !*count_include_pad || *ceil_mode),
        Layer::AdaptiveAvgPool { .. } | Layer::Flatten | Layer::Linear { .. } => false,
        // Padding shifts the region (not tracked yet): batched full passes.
        Layer::Pad { .. } => false,
        // A non-square kernel's windows differ by axis (not tracked yet).
        Layer::Conv { kw: Some(_), .. } => false,
        // Element-wise products and differences of two nodes: a gate
        // reads the global pooling before it (never reached here), and
        // same-shape ones are not merged yet.
        Layer::Mul | Layer::Sub | Layer::Div => false,
        // Attention mixes every token: an occluder changes them all.
        Layer::Embed { .. }
        | Layer::Attention { .. }
        | Layer::Grid { .. }
        | Layer::Token { .. }
        | Layer::WindowAttention { .. }
        | Layer::PatchMerge
        | Layer::Crop { .. } => false,
        // Per-position ops (over channels at each position) keep the region.
        Layer::Sigmoid
        | Layer::Silu
        | Layer::HardSigmoid { .. }
        | Layer::HardSwish
        | Layer::Gelu { .. }
        | Layer::ChannelNorm { .. }
        | Layer::ChannelShuffle { .. }
        | Layer::Channels { .. } => true,
        // Every op this evaluator knows, named: a new op is not exact here
        // until it is listed (the compiler asks for it).
        Layer::Conv { .. }
        | Layer::Relu
        | Layer::Clip { .. }
        | Layer::Lrn { .. }
        | Layer::MaxPool { .. }
        | Layer::Dropout { .. }
        | Layer::Affine { .. }
        | Layer::Add
        | Layer::Concat => true,
    });
    let cut = (last + 1..spec.nodes.len()).all(|i| {
        net.sources(i)
            .iter()
            .all(|s| matches!(s, Some(j) if *j >= last))
    });
    nodes_ok && cut
}

/// A node's output for a batch of positions: per position the top-left
/// corner of the window that differs from the unoccluded pass, one window
/// size for the batch, and the window's values [B, C, h, w].
struct Changed {
    start: Vec<(i64, i64)>,
    len: (i64, i64),
    state: Tensor,
}

/// The unoccluded pass: every node's output (no batch dimension) and, for
/// spatial nodes, their input padded as they pad it.
pub struct Base {
    last: usize,
    out: Vec<Tensor>,
    padded: Vec<Option<Tensor>>,
}

/// Pad by `p` before and `p + extra` after along both spatial axes.
fn pad_with(x: &Tensor, p: i64, extra: i64, value: f64) -> Tensor {
    if p == 0 && extra == 0 {
        return x.shallow_clone();
    }
    let (c, h, w) = x.size3().expect("3d");
    let out = Tensor::full(
        [c, h + 2 * p + extra, w + 2 * p + extra],
        value,
        (x.kind(), x.device()),
    );
    out.narrow(1, p, h).narrow(2, p, w).copy_(x);
    out
}

/// A spatial node's input padded as it pads it (zeros; -inf for max
/// pools), plus what a ceil-mode pool's last window reaches past the edge.
fn padded(l: &Layer, x: &Tensor) -> Tensor {
    let w = l.window();
    let n = x.size()[1];
    let out = w.out_size(n, l.ceil_mode());
    let extra = ((out - 1) * w.stride + w.k - (n + 2 * w.pad)).max(0);
    match l {
        Layer::MaxPool { .. } => pad_with(x, w.pad, extra, f64::NEG_INFINITY),
        _ => pad_with(x, w.pad, extra, 0.0),
    }
}

/// [`padded`] for a batch [B, C, H, W].
fn padded_batch(l: &Layer, x: &Tensor) -> Tensor {
    let w = l.window();
    let n = x.size()[2];
    let out = w.out_size(n, l.ceil_mode());
    let extra = ((out - 1) * w.stride + w.k - (n + 2 * w.pad)).max(0);
    let value = match l {
        Layer::MaxPool { .. } => f64::NEG_INFINITY,
        _ => 0.0,
    };
    if w.pad == 0 && extra == 0 {
        return x.shallow_clone();
    }
    x.pad(
        [w.pad, w.pad + extra, w.pad, w.pad + extra],
        "constant",
        Some(value),
    )
}

fn is_spatial(l: &Layer) -> bool {
    matches!(
        l,
        Layer::Conv { .. } | Layer::MaxPool { .. } | Layer::AvgPool { .. }
    )
}

/// Apply spatial node `i` to an input already padded (so with padding 0).
fn apply_padded(net: &Net, i: usize, x: &Tensor) -> Tensor {
    let l = &net.spec.nodes[i].op;
    let w = l.window();
    match l {
        Layer::Conv {
            groups,
            dilation,
            k,
            ..
        } => {
            let p = net.params(i);
            let _ = k;
            crate::net::channels_last(x).conv2d(
                net.inference_weight(i),
                Some(&p.bias),
                [w.stride, w.stride],
                [0, 0],
                [*dilation, *dilation],
                *groups,
            )
        }
        Layer::MaxPool { k, .. } => {
            x.max_pool2d([*k, *k], [w.stride, w.stride], [0, 0], [1, 1], false)
        }
        Layer::AvgPool { k, .. } => x.avg_pool2d(
            [*k, *k],
            [w.stride, w.stride],
            [0, 0],
            false,
            true,
            None::<i64>,
        ),
        _ => unreachable!("a spatial node"),
    }
}

impl Base {
    /// The unoccluded pass of `x` ([1, C, S, S]).
    pub fn new(net: &Net, x: &Tensor) -> Base {
        let last = net.spec.last_maps_node();
        let mut out: Vec<Tensor> = Vec::with_capacity(last + 1);
        let mut padded_in = Vec::with_capacity(last + 1);
        for i in 0..=last {
            let ins: Vec<Tensor> = net
                .sources(i)
                .iter()
                .map(|s| match s {
                    Some(j) => out[*j].unsqueeze(0),
                    None => x.shallow_clone(),
                })
                .collect();
            let l = &net.spec.nodes[i].op;
            if is_spatial(l) {
                let p = padded(l, &ins[0].get(0));
                out.push(apply_padded(net, i, &p.unsqueeze(0)).get(0));
                padded_in.push(Some(p));
            } else {
                out.push(net.apply_node(i, &ins).get(0));
                padded_in.push(None);
            }
        }
        Base {
            last,
            out,
            padded: padded_in,
        }
    }

    /// The last maps of the unoccluded image, [C, H, W].
    pub fn last_maps(&self) -> &Tensor {
        &self.out[self.last]
    }

    /// The last maps [B, C, H, W] of the image occluded at each of `pos`
    /// by a square of zeros of side `size`.
    pub fn forward(&self, net: &Net, pos: &[(i64, i64)], size: i64, c_in: i64) -> Tensor {
        let b = pos.len() as i64;
        let dev = self.out[0].device();
        let image = Changed {
            start: pos.to_vec(),
            len: (size, size),
            state: Tensor::zeros([b, c_in, size, size], (Kind::Float, dev)),
        };
        let uses = net.spec.consumers();
        let mut vals: Vec<Option<Changed>> = (0..=self.last).map(|_| None).collect();
        let mut remaining: Vec<usize> = uses.iter().map(|u| u.len()).collect();
        for i in 0..=self.last {
            let srcs = net.sources(i).to_vec();
            let ins: Vec<&Changed> = srcs
                .iter()
                .map(|s| match s {
                    Some(j) => vals[*j].as_ref().expect("computed before"),
                    None => &image,
                })
                .collect();
            let l = &net.spec.nodes[i].op;
            let n_out = self.out[i].size()[1];
            // An input that differs from the unoccluded pass everywhere.
            let whole = |k: usize| match srcs[k] {
                Some(j) => {
                    let n = self.out[j].size()[1];
                    ins[k].len == (n, n)
                }
                None => false,
            };
            let next = if (0..ins.len()).all(whole) {
                // Every input differs everywhere: the node runs whole.
                let states: Vec<Tensor> = ins.iter().map(|c| c.state.shallow_clone()).collect();
                let state = if is_spatial(l) {
                    apply_padded(net, i, &padded_batch(l, &states[0]))
                } else {
                    net.apply_node(i, &states)
                };
                Changed {
                    start: vec![(0, 0); pos.len()],
                    len: (n_out, n_out),
                    state,
                }
            } else if is_spatial(l) {
                let p = self.padded[i]
                    .as_ref()
                    .expect("a spatial node's padded input");
                window(net, i, p, l.window(), n_out, ins[0])
            } else if matches!(l, Layer::Add | Layer::Concat) {
                let bases: Vec<&Tensor> =
                    srcs.iter().map(|s| &self.out[s.expect("a node")]).collect();
                merge(net, i, &ins, &bases, n_out)
            } else {
                Changed {
                    start: ins[0].start.clone(),
                    len: ins[0].len,
                    state: net.apply_node(i, &[ins[0].state.shallow_clone()]),
                }
            };
            for j in srcs.into_iter().flatten() {
                remaining[j] -= 1;
                if remaining[j] == 0 && j != self.last {
                    vals[j] = None;
                }
            }
            vals[i] = Some(next);
        }
        let last = vals[self.last].take().expect("the last maps");
        self.full(&last, self.last, b)
    }

    /// Node `node`'s whole output with each position's changed window in place.
    fn full(&self, ch: &Changed, node: usize, b: i64) -> Tensor {
        let base = &self.out[node];
        let n = base.size()[1];
        if ch.len == (n, n) {
            return ch.state.shallow_clone();
        }
        let full = base.unsqueeze(0).expand([b, -1, -1, -1], false).copy();
        for (k, &(r, c)) in ch.start.iter().enumerate() {
            full.get(k as i64)
                .narrow(1, r, ch.len.0)
                .narrow(2, c, ch.len.1)
                .copy_(&ch.state.get(k as i64));
        }
        full
    }
}

/// A spatial node over the outputs whose windows reach each changed region.
fn window(net: &Net, i: usize, base: &Tensor, w: Window, n_out: i64, ch: &Changed) -> Changed {
    // Exact range of outputs that can see the changed run [a, a+len).
    let range = |a: i64, len: i64| {
        let lo = (a + w.pad - w.k + 1).max(0);
        let lo = (lo + w.stride - 1) / w.stride;
        let hi = ((a + len - 1 + w.pad) / w.stride).min(n_out - 1);
        (lo, hi)
    };
    let extent = |axis: usize| {
        ch.start
            .iter()
            .map(|&rc| {
                let (a, len) = if axis == 0 {
                    (rc.0, ch.len.0)
                } else {
                    (rc.1, ch.len.1)
                };
                let (lo, hi) = range(a, len);
                hi - lo + 1
            })
            .max()
            .unwrap_or(1)
            .clamp(1, n_out)
    };
    let out = (extent(0), extent(1));
    let w_in = ((out.0 - 1) * w.stride + w.k, (out.1 - 1) * w.stride + w.k);
    let mut starts = Vec::with_capacity(ch.start.len());
    // The batch of windows, laid out channels-last for the convolutions.
    let c_in = base.size()[0];
    let batch = crate::net::channels_last(&Tensor::empty(
        [ch.start.len() as i64, c_in, w_in.0, w_in.1],
        (base.kind(), base.device()),
    ));
    for (k, &(r, c)) in ch.start.iter().enumerate() {
        let oy = range(r, ch.len.0).0.min(n_out - out.0);
        let ox = range(c, ch.len.1).0.min(n_out - out.1);
        starts.push((oy, ox));
        let (wy, wx) = (oy * w.stride, ox * w.stride);
        let mut win = batch.get(k as i64);
        win.copy_(&base.narrow(1, wy, w_in.0).narrow(2, wx, w_in.1));
        // Paste the changed window where it overlaps (padded coordinates).
        paste(
            &win,
            (wy, wx),
            &ch.state.get(k as i64),
            (r + w.pad, c + w.pad),
        );
    }
    Changed {
        start: starts,
        len: out,
        state: apply_padded(net, i, &batch),
    }
}

/// Copy `src` (placed at `at`) into `dst` (placed at `origin`) where they overlap.
fn paste(dst: &Tensor, origin: (i64, i64), src: &Tensor, at: (i64, i64)) {
    let (h, w) = (dst.size()[1], dst.size()[2]);
    let (sh, sw) = (src.size()[1], src.size()[2]);
    let (y0, y1) = (at.0.max(origin.0), (at.0 + sh).min(origin.0 + h));
    let (x0, x1) = (at.1.max(origin.1), (at.1 + sw).min(origin.1 + w));
    if y1 > y0 && x1 > x0 {
        dst.narrow(1, y0 - origin.0, y1 - y0)
            .narrow(2, x0 - origin.1, x1 - x0)
            .copy_(
                &src.narrow(1, y0 - at.0, y1 - y0)
                    .narrow(2, x0 - at.1, x1 - x0),
            );
    }
}

/// An add or concat over the union of its inputs' changed regions.
fn merge(net: &Net, i: usize, ins: &[&Changed], bases: &[&Tensor], n: i64) -> Changed {
    let b = ins[0].start.len();
    let span = |k: usize, axis: usize| -> (i64, i64) {
        let lo = ins
            .iter()
            .map(|c| {
                if axis == 0 {
                    c.start[k].0
                } else {
                    c.start[k].1
                }
            })
            .min()
            .unwrap_or(0);
        let hi = ins
            .iter()
            .map(|c| {
                if axis == 0 {
                    c.start[k].0 + c.len.0
                } else {
                    c.start[k].1 + c.len.1
                }
            })
            .max()
            .unwrap_or(n);
        (lo, hi)
    };
    let len = |axis: usize| {
        (0..b)
            .map(|k| {
                let (lo, hi) = span(k, axis);
                hi - lo
            })
            .max()
            .unwrap_or(n)
            .clamp(1, n)
    };
    let l = (len(0), len(1));
    let start: Vec<(i64, i64)> = (0..b)
        .map(|k| (span(k, 0).0.min(n - l.0), span(k, 1).0.min(n - l.1)))
        .collect();
    let parts: Vec<Tensor> = ins
        .iter()
        .zip(bases)
        .map(|(c, base)| {
            let m = Tensor::empty(
                [b as i64, base.size()[0], l.0, l.1],
                (base.kind(), base.device()),
            );
            for (k, &(r, cc)) in start.iter().enumerate() {
                let mut win = m.get(k as i64);
                win.copy_(&base.narrow(1, r, l.0).narrow(2, cc, l.1));
                paste(&win, (r, cc), &c.state.get(k as i64), c.start[k]);
            }
            m
        })
        .collect();
    Changed {
        start,
        len: l,
        state: net.apply_node(i, &parts),
    }
}
