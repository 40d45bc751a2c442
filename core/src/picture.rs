//! Pictures, in one place: PNG encoding, data URLs, the viridis colour
//! scale, signed maps around grey (the paper's projections), saliency heat
//! maps and the receptive-field crops of the top 9.

use anyhow::Result;
use image::RgbImage;
use tch::{Kind, Tensor};

pub fn png(img: &RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("png encoding to memory");
    out.into_inner()
}

/// A perceptual colour scale (viridis, 5 stops), t in 0..1.
pub fn viridis(t: f64) -> [u8; 3] {
    const STOPS: [[f64; 3]; 5] = [
        [68.0, 1.0, 84.0],
        [59.0, 82.0, 139.0],
        [33.0, 145.0, 140.0],
        [94.0, 201.0, 98.0],
        [253.0, 231.0, 37.0],
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    } * 4.0;
    let i = (t.floor() as usize).min(3);
    let f = t - i as f64;
    std::array::from_fn(|c| (STOPS[i][c] * (1.0 - f) + STOPS[i + 1][c] * f).round() as u8)
}

/// The q-quantile of |values| (the contrast point of the pictures: a few
/// strongest pixels clip so that the rest shows).
pub fn quantile_abs(t: &Tensor, q: f64) -> Result<f64> {
    let mut v: Vec<f32> = crate::net::values(&t.abs(), "a picture's values")?;
    v.sort_by(f32::total_cmp);
    let i = ((v.len().saturating_sub(1)) as f64 * q) as usize;
    // An empty map has no contrast point: 0 (drawn as all grey).
    Ok(v.get(i).map_or(0.0, |&x| x as f64))
}

/// One convention for every method: the saliency per pixel ([`saliency`],
/// negatives as 0), its 99.5th percentile at the top of the viridis scale.
pub fn heat_image(map: &Tensor) -> Result<image::RgbImage> {
    let (w, h, v) = mask(map)?;
    image(w, h, v.into_iter().flat_map(viridis).collect())
}

/// As the paper draws a projection: signed, mid grey at 0, the 99.5th
/// percentile of |value| at black or white, in colour; per-pixel maps as
/// [`heat_image`].
pub fn signed_image(map: &Tensor) -> Result<image::RgbImage> {
    if map.dim() != 3 {
        return heat_image(map);
    }
    let q = quantile_abs(map, 0.995)?;
    let (w, h, rgb) = to_rgb8_scaled(map, q)?;
    image(w, h, rgb)
}

/// An image of `w` x `h` RGB bytes.
fn image(w: u32, h: u32, rgb: Vec<u8>) -> Result<image::RgbImage> {
    image::RgbImage::from_raw(w, h, rgb)
        .ok_or_else(|| anyhow::anyhow!("a {w}x{h} picture without its {} bytes", w * h * 3))
}

/// A PNG as a data URL (for results that carry several pictures).
pub fn data_url(img: &image::RgbImage) -> String {
    use base64::Engine as _;
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png(img))
    )
}

/// [`to_rgb8`] as an image.
pub fn to_image(pixels: &Tensor) -> Result<image::RgbImage> {
    let (w, h, rgb) = to_rgb8(pixels)?;
    image(w, h, rgb)
}

/// A projection as the paper draws it (Fig. 2): cut to the receptive field
/// `field` (y0, x0, y1, x1, inclusive) of the kept activation, with its own contrast (the 99.5th percentile of |v|
/// reaches black or white: a few strongest pixels clip so that the faint
/// pattern of a deep layer shows), resized to `side` px.
pub fn field_image(
    pixels: &Tensor,
    field: (i64, i64, i64, i64),
    side: u32,
) -> Result<image::RgbImage> {
    let (y0, x0, y1, x1) = field;
    let cut = pixels.narrow(1, y0, y1 - y0 + 1).narrow(2, x0, x1 - x0 + 1);
    let mut v: Vec<f32> = crate::net::values(&cut.abs(), "a projection")?;
    v.sort_by(f32::total_cmp);
    let q = v
        .get(v.len().saturating_sub(1) * 995 / 1000)
        .map_or(0.0, |&x| x as f64);
    let (w, h, rgb) = to_rgb8_scaled(&cut, q)?;
    let img = image(w, h, rgb)?;
    Ok(image::imageops::resize(
        &img,
        side,
        side,
        image::imageops::FilterType::Triangle,
    ))
}

/// Contrast stretch for people: centre at 0 -> mid grey, scale so the largest
/// absolute value reaches black or white (symmetric, so the sign is visible).
/// Returns [H, W, 3] u8 data.
pub fn to_rgb8(pixels: &Tensor) -> Result<(u32, u32, Vec<u8>)> {
    let m = pixels.abs().max().double_value(&[]);
    to_rgb8_scaled(pixels, m)
}

/// As [`to_rgb8`], with `max_abs` (not the input's own) mapped to black/white.
pub fn to_rgb8_scaled(pixels: &Tensor, max_abs: f64) -> Result<(u32, u32, Vec<u8>)> {
    let mut p = pixels.to_device(tch::Device::Cpu).to_kind(Kind::Float);
    if p.size()[0] == 1 {
        // A grey network's projection, shown in grey.
        p = p.expand([3, -1, -1], false);
    }
    let m = max_abs.max(1e-12);
    let img = ((p / m) * 127.5 + 127.5)
        .clamp(0.0, 255.0)
        .round()
        .to_kind(Kind::Uint8)
        .permute([1, 2, 0])
        .contiguous();
    let (h, w) = (img.size()[0] as u32, img.size()[1] as u32);
    let data: Vec<u8> = crate::net::values(&img, "a picture's pixels")?;
    Ok((w, h, data))
}

/// A map's saliency per pixel ([S, S]): the max over channels of |value|
/// for a [C, S, S] map, the value itself for an [S, S] map.
pub fn saliency(map: &Tensor) -> Tensor {
    if map.dim() == 3 {
        map.abs().amax([0i64].as_slice(), false)
    } else {
        map.shallow_clone()
    }
}

/// The jet colour map at `t` in 0..1 (OpenCV's `COLORMAP_JET`, which the
/// grad-cam package's `show_cam_on_image` uses): dark blue, cyan, yellow, dark red.
pub fn jet(t: f64) -> [u8; 3] {
    let t = t.clamp(0.0, 1.0);
    let c = |x: f64| ((1.5 - (4.0 * t - x).abs()).clamp(0.0, 1.0) * 255.0).round() as u8;
    [c(3.0), c(2.0), c(1.0)]
}

/// The saliency of `map` scaled as [`heat_image`] scales it, in 0..1: (w, h, values).
fn mask(map: &Tensor) -> Result<(u32, u32, Vec<f64>)> {
    let s = saliency(map)
        .relu()
        .to_device(tch::Device::Cpu)
        .to_kind(Kind::Float);
    let m = quantile_abs(&s, 0.995)?.max(1e-12);
    let (h, w) = (s.size()[0] as u32, s.size()[1] as u32);
    let v: Vec<f32> = crate::net::values(&s, "a saliency map")?;
    Ok((
        w,
        h,
        v.into_iter().map(|x| (x as f64 / m).min(1.0)).collect(),
    ))
}

/// The saliency of `map` in jet colours (the overlay's colours).
pub fn jet_image(map: &Tensor) -> Result<image::RgbImage> {
    let (w, h, v) = mask(map)?;
    let rgb = v.into_iter().flat_map(jet).collect();
    image(w, h, rgb)
}

/// `map` blended over `crop` as the grad-cam package's
/// `show_cam_on_image(img, mask, use_rgb=True, image_weight=1 - opacity)`:
/// opacity·jet(mask) + (1 − opacity)·image, divided by its maximum.
pub fn overlay(crop: &image::RgbImage, map: &Tensor, opacity: f64) -> Result<image::RgbImage> {
    if !(0.0..=1.0).contains(&opacity) {
        anyhow::bail!("the overlay's opacity is 0 to 1, got {opacity}");
    }
    let (w, h, v) = mask(map)?;
    if crop.dimensions() != (w, h) {
        anyhow::bail!(
            "a {w}×{h} map cannot lie over a {}×{} crop",
            crop.width(),
            crop.height()
        );
    }
    let mixed: Vec<f64> = crop
        .pixels()
        .zip(&v)
        .flat_map(|(p, &m)| {
            let j = jet(m);
            (0..3).map(move |c| opacity * j[c] as f64 + (1.0 - opacity) * p[c] as f64)
        })
        .collect();
    let top = mixed.iter().copied().fold(1e-12, f64::max);
    image(
        w,
        h,
        mixed
            .iter()
            .map(|x| (255.0 * x / top).round() as u8)
            .collect(),
    )
}
