//! Mutated images for fuzzing the decode -> preprocess path (core/tests/fuzz.rs)
//! and the HTTP API (`zfvis-dev fuzz`): small valid seed files of every accepted
//! format, and mutations a careless or hostile client produces (bit flips,
//! truncations, insertions, deletions, header bytes, chunk and segment
//! lengths, spliced spans). Deterministic from a seed.

use image::{ImageFormat, RgbImage, RgbaImage};
use rand::{rngs::StdRng, Rng};
use std::io::Cursor;

/// A seed file: its format's name and bytes.
pub struct Seed {
    pub format: &'static str,
    pub bytes: Vec<u8>,
}

fn picture(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let v = (x * 7 + y * 13) ^ (x * y);
        image::Rgb([(x * 4) as u8, (y * 5) as u8, (v % 251) as u8])
    })
}

fn encode(img: &image::DynamicImage, f: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, f).expect("encode a seed");
    out.into_inner()
}

/// Valid seed files: JPEG (baseline, greyscale), PNG (RGB, RGBA, greyscale),
/// GIF, WebP (lossless), BMP and TIFF, each a few kB.
pub fn seeds() -> Vec<Seed> {
    let rgb = image::DynamicImage::ImageRgb8(picture(61, 45));
    let rgba = image::DynamicImage::ImageRgba8(RgbaImage::from_fn(40, 52, |x, y| {
        image::Rgba([(x * 6) as u8, (y * 4) as u8, 90, ((x + y) * 5) as u8])
    }));
    let grey = image::DynamicImage::ImageLuma8(rgb.to_luma8());
    let jpeg = |img: &image::DynamicImage, q: u8| {
        let mut out = Cursor::new(Vec::new());
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, q)
            .encode_image(img)
            .expect("encode a seed");
        out.into_inner()
    };
    let gif = {
        let mut out = Cursor::new(Vec::new());
        {
            let mut enc = image::codecs::gif::GifEncoder::new(&mut out);
            enc.encode_frame(image::Frame::new(rgba.to_rgba8()))
                .expect("encode a seed");
        }
        out.into_inner()
    };
    vec![
        Seed {
            format: "jpeg",
            bytes: jpeg(&rgb, 85),
        },
        Seed {
            format: "jpeg",
            bytes: jpeg(&grey, 60),
        },
        Seed {
            format: "png",
            bytes: encode(&rgb, ImageFormat::Png),
        },
        Seed {
            format: "png",
            bytes: encode(&rgba, ImageFormat::Png),
        },
        Seed {
            format: "png",
            bytes: encode(&grey, ImageFormat::Png),
        },
        Seed {
            format: "gif",
            bytes: gif,
        },
        Seed {
            format: "webp",
            bytes: encode(&rgba, ImageFormat::WebP),
        },
        Seed {
            format: "bmp",
            bytes: encode(&rgb, ImageFormat::Bmp),
        },
        Seed {
            format: "tiff",
            bytes: encode(&rgb, ImageFormat::Tiff),
        },
    ]
}

/// The kinds of mutation, in the order `mutate` draws them.
pub const KINDS: &[&str] = &[
    "bitflip", "truncate", "insert", "delete", "header", "length", "splice",
];

const INTERESTING: &[u32] = &[
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
];

/// Offsets of length (and size) fields: JPEG segment lengths, PNG chunk
/// lengths, RIFF chunk sizes, BMP/GIF header sizes; (offset, bytes, big-endian).
fn length_fields(b: &[u8]) -> Vec<(usize, usize, bool)> {
    let mut out = vec![];
    if b.starts_with(&[0xFF, 0xD8]) {
        let mut i = 2;
        while i + 4 <= b.len() && b[i] == 0xFF {
            let m = b[i + 1];
            if m == 0xD8 || (0xD0..=0xD7).contains(&m) || m == 0x01 {
                i += 2;
                continue;
            }
            out.push((i + 2, 2, true));
            if m == 0xDA {
                break;
            }
            i += 2 + u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
        }
    } else if b.starts_with(b"\x89PNG") {
        let mut i = 8;
        while i + 8 <= b.len() {
            out.push((i, 4, true));
            let n = u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
            i = i.saturating_add(12).saturating_add(n);
        }
    } else if b.starts_with(b"RIFF") {
        out.extend([(4, 4, false), (16, 4, false)]);
        out.extend([(24, 3, false), (27, 3, false)]);
    } else if b.starts_with(b"BM") {
        out.extend([
            (2, 4, false),
            (10, 4, false),
            (14, 4, false),
            (18, 4, false),
        ]);
        out.extend([
            (22, 4, false),
            (28, 2, false),
            (34, 4, false),
            (46, 4, false),
        ]);
    } else if b.starts_with(b"GIF") {
        out.extend([(6, 2, false), (8, 2, false), (10, 1, false)]);
    } else if b.starts_with(b"II") || b.starts_with(b"MM") {
        out.push((4, 4, b.starts_with(b"MM")));
    }
    out.retain(|&(o, n, _)| o + n <= b.len());
    out
}

/// One mutation of `seed`, drawn from `rng`: (kind, bytes).
pub fn mutate(rng: &mut StdRng, seed: &[u8]) -> (&'static str, Vec<u8>) {
    let mut b = seed.to_vec();
    let kind = KINDS[rng.random_range(0..KINDS.len())];
    let n = b.len().max(1);
    match kind {
        "bitflip" => {
            for _ in 0..rng.random_range(1..=8) {
                let i = rng.random_range(0..n).min(b.len().saturating_sub(1));
                if !b.is_empty() {
                    b[i] ^= 1 << rng.random_range(0..8);
                }
            }
        }
        "truncate" => b.truncate(rng.random_range(0..n)),
        "insert" => {
            let at = rng.random_range(0..=b.len());
            let k = rng.random_range(1..=64);
            let junk: Vec<u8> = (0..k).map(|_| rng.random()).collect();
            b.splice(at..at, junk);
        }
        "delete" => {
            let at = rng.random_range(0..n).min(b.len());
            let k = rng.random_range(1..=64).min(b.len() - at);
            b.drain(at..at + k);
        }
        "header" => {
            let m = b.len().min(64);
            for _ in 0..rng.random_range(1..=4) {
                if m > 0 {
                    let i = rng.random_range(0..m);
                    b[i] = if rng.random_bool(0.5) {
                        rng.random()
                    } else {
                        INTERESTING[rng.random_range(0..INTERESTING.len())] as u8
                    };
                }
            }
        }
        "length" => {
            let fields = length_fields(&b);
            let (at, width, be) = if fields.is_empty() {
                (rng.random_range(0..n.saturating_sub(4).max(1)), 4, false)
            } else {
                fields[rng.random_range(0..fields.len())]
            };
            let old = (0..width).fold(0u32, |acc, k| {
                let byte = *b.get(at + if be { k } else { width - 1 - k }).unwrap_or(&0);
                (acc << 8) | byte as u32
            });
            let v = match rng.random_range(0..3) {
                0 => INTERESTING[rng.random_range(0..INTERESTING.len())],
                1 => old.wrapping_add(rng.random_range(1..=16)),
                _ => old.wrapping_sub(rng.random_range(1..=16)),
            };
            for k in 0..width {
                let byte = (v >> (8 * k)) as u8;
                let i = if be { at + width - 1 - k } else { at + k };
                if i < b.len() {
                    b[i] = byte;
                }
            }
        }
        _ => {
            // splice: a span copied over another place
            if b.len() > 2 {
                let from = rng.random_range(0..b.len() - 1);
                let k = rng.random_range(1..=256).min(b.len() - from);
                let span = b[from..from + k].to_vec();
                let to = rng.random_range(0..b.len());
                let end = (to + k).min(b.len());
                b.splice(to..end, span);
            }
        }
    }
    (kind, b)
}
