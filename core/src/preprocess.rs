//! Bytes -> RGB image -> the crop the model sees -> normalised tensor.
//! Resize the shorter side to the input size (bilinear), centre crop, then
//! normalise with the manifest's mean/std. The crop shown to people is exactly
//! the one returned by [`model_crop`].

use anyhow::Result;
use image::{imageops::FilterType, DynamicImage, ImageDecoder, ImageReader, RgbImage};
use std::io::Cursor;
use tch::{Kind, Tensor};

/// Largest accepted image, in pixels (checked before decoding).
pub const MAX_PIXELS: u64 = 40_000_000;
pub const MAX_SIDE: u32 = 16_384;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("empty image")]
    Empty,
    #[error("not a supported image (JPEG, PNG, WebP, GIF, BMP)")]
    Format,
    #[error("image is {0}x{1} pixels; the limit is {MAX_PIXELS} pixels and {MAX_SIDE} per side")]
    TooLarge(u32, u32),
    #[error("cannot decode image: {0}")]
    Decode(String),
}

/// Width and height from the header only.
pub fn dimensions(bytes: &[u8]) -> Result<(u32, u32), ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|_| ImageError::Format)?;
    if reader.format().is_none() {
        return Err(ImageError::Format);
    }
    reader
        .into_dimensions()
        .map_err(|e| ImageError::Decode(e.to_string()))
}

/// Decode any supported image to RGB8: first GIF frame, EXIF orientation
/// applied, alpha composited over white, greyscale/CMYK converted.
pub fn decode(bytes: &[u8]) -> Result<RgbImage, ImageError> {
    let (w, h) = dimensions(bytes)?;
    if w == 0 || h == 0 {
        return Err(ImageError::Decode("zero-sized image".into()));
    }
    if w > MAX_SIDE || h > MAX_SIDE || (w as u64) * (h as u64) > MAX_PIXELS {
        return Err(ImageError::TooLarge(w, h));
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|_| ImageError::Format)?;
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| ImageError::Decode(e.to_string()))?;
    let orientation = decoder.orientation().ok();
    let mut img =
        DynamicImage::from_decoder(decoder).map_err(|e| ImageError::Decode(e.to_string()))?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    Ok(flatten_alpha(img))
}

fn flatten_alpha(img: DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.to_rgb8();
    }
    let rgba = img.to_rgba8();
    let (w, h) = rgba.dimensions();
    RgbImage::from_fn(w, h, |x, y| {
        let p = rgba.get_pixel(x, y).0;
        let a = p[3] as f32 / 255.0;
        let mix = |c: u8| (c as f32 * a + 255.0 * (1.0 - a)).round() as u8;
        image::Rgb([mix(p[0]), mix(p[1]), mix(p[2])])
    })
}

/// Resize so the shorter side is `size`, then crop the centre `size`x`size`.
pub fn model_crop(img: &RgbImage, size: u32) -> RgbImage {
    resize_crop(img, size, size)
}

/// Resize the shorter side to `resize`, then centre-crop `crop`x`crop`.
pub fn resize_crop(img: &RgbImage, resize: u32, crop: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let (nw, nh) = if w <= h {
        (
            resize,
            ((h as u64 * resize as u64 + w as u64 / 2) / w as u64).max(resize as u64) as u32,
        )
    } else {
        (
            ((w as u64 * resize as u64 + h as u64 / 2) / h as u64).max(resize as u64) as u32,
            resize,
        )
    };
    let resized = if (nw, nh) == (w, h) {
        img.clone()
    } else {
        image::imageops::resize(img, nw, nh, FilterType::Triangle)
    };
    let x = (nw - crop) / 2;
    let y = (nh - crop) / 2;
    image::imageops::crop_imm(&resized, x, y, crop, crop).to_image()
}

/// Map a point of the original image to the model crop's pixel coordinates
/// (shorter side resized to `resize`, centre `size`x`size` crop).
pub fn map_point(orig: (u32, u32), resize: u32, size: u32, p: (f64, f64)) -> (f64, f64) {
    let (w, h) = (orig.0 as f64, orig.1 as f64);
    let s = resize as f64 / w.min(h);
    let (nw, nh) = ((w * s).round(), (h * s).round());
    let (ox, oy) = (
        ((nw - size as f64) / 2.0).floor(),
        ((nh - size as f64) / 2.0).floor(),
    );
    (p.0 * s - ox, p.1 * s - oy)
}

/// How an image becomes a network's input (from the model's manifest):
/// shorter side to `resize`, centre crop `input_size`, (p - mean) / std,
/// channels reversed for BGR networks.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocess {
    pub input_size: u32,
    pub resize: u32,
    pub mean: [f64; 3],
    pub std: [f64; 3],
    pub bgr: bool,
}

impl Preprocess {
    /// The crop the model sees (shown to people as is).
    pub fn crop(&self, img: &RgbImage) -> RgbImage {
        resize_crop(img, self.resize, self.input_size)
    }
    /// The crop as the network's [3, S, S] input.
    pub fn tensor(&self, crop: &RgbImage) -> Tensor {
        let t = to_tensor(crop, &self.mean, &self.std);
        if self.bgr {
            t.flip([0])
        } else {
            t
        }
    }
    /// A point of the original image in crop pixels.
    pub fn map_point(&self, orig: (u32, u32), p: (f64, f64)) -> (f64, f64) {
        map_point(orig, self.resize, self.input_size, p)
    }
}

/// RGB8 crop -> [3, H, W] float tensor normalised with mean/std (RGB, 0..1).
pub fn to_tensor(img: &RgbImage, mean: &[f64; 3], std: &[f64; 3]) -> Tensor {
    let (w, h) = img.dimensions();
    let t = Tensor::from_slice(img.as_raw())
        .view([h as i64, w as i64, 3])
        .permute([2, 0, 1])
        .to_kind(Kind::Float)
        / 255.0;
    let m = Tensor::from_slice(&mean.map(|v| v as f32)).view([3, 1, 1]);
    let s = Tensor::from_slice(&std.map(|v| v as f32)).view([3, 1, 1]);
    (t - m) / s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_keeps_aspect_and_centre() {
        let img = RgbImage::from_fn(400, 200, |x, _| {
            image::Rgb([if x < 200 { 0 } else { 255 }, 0, 0])
        });
        let c = model_crop(&img, 100);
        assert_eq!(c.dimensions(), (100, 100));
        // The centre of the original is the centre of the crop.
        assert_eq!(
            map_point((400, 200), 100, 100, (200.0, 100.0)),
            (50.0, 50.0)
        );
        // Shorter side to 128 (256x128), centre 100x100 crop: offsets (78, 14).
        assert_eq!(
            map_point((400, 200), 128, 100, (200.0, 100.0)),
            (50.0, 50.0)
        );
        assert_eq!(map_point((400, 200), 128, 100, (0.0, 0.0)), (-78.0, -14.0));
    }

    #[test]
    fn rejects_garbage_and_empty() {
        assert!(matches!(decode(b""), Err(ImageError::Empty)));
        assert!(matches!(
            decode(b"hello world, not an image"),
            Err(ImageError::Format)
        ));
    }

    #[test]
    fn alpha_goes_over_white() {
        let img = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            2,
            2,
            image::Rgba([0, 0, 0, 0]),
        ));
        assert_eq!(flatten_alpha(img).get_pixel(0, 0).0, [255, 255, 255]);
    }
}

/// ImageNet's channel mean and standard deviation (RGB, 0..1): the
/// normalisation of the networks trained here.
pub const MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const STD: [f64; 3] = [0.229, 0.224, 0.225];
