//! Bytes -> RGB image -> the crop the model sees -> normalised tensor, the
//! way PIL and torchvision do it, so that the same file gives the same
//! numbers as a PyTorch pipeline: JPEGs decoded by libjpeg-turbo with PIL's
//! settings (ISLOW DCT, fancy upsampling, CMYK as Adobe-inverted), the
//! shorter side resized with an antialiased bilinear filter (PIL's
//! `Image.resize(.., BILINEAR)`, torchvision's `Resize` on PIL images), a
//! centre crop with torchvision's `CenterCrop` rounding, then the manifest's
//! mean/std. The crop shown to people is exactly the one returned by
//! [`Preprocess::crop`].

use crate::resample;
pub use crate::resample::Filter;
use anyhow::Result;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use tch::{Kind, Tensor};

/// Largest accepted image, in pixels (checked before decoding).
pub const MAX_PIXELS: u64 = 40_000_000;
pub const MAX_SIDE: u32 = 16_384;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("empty image")]
    Empty,
    #[error("not a supported image (JPEG, PNG, WebP, GIF, BMP, TIFF)")]
    Format,
    #[error("image is {0}x{1} pixels; the limit is {MAX_PIXELS} pixels and {MAX_SIDE} per side")]
    TooLarge(u32, u32),
    #[error("cannot decode image: {0}")]
    Decode(String),
    #[error("the server's storage is full; try again later")]
    StoreFull,
    #[error("cannot store the image: {0}")]
    Store(String),
}

fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8, 0xFF])
}

/// The formats decoded besides JPEG; others (the image crate knows many
/// more) are refused before any decoder sees them.
const FORMATS: &[ImageFormat] = &[
    ImageFormat::Png,
    ImageFormat::Gif,
    ImageFormat::WebP,
    ImageFormat::Bmp,
    ImageFormat::Tiff,
];

/// A reader for a non-JPEG image of an accepted format, with the image
/// crate's allocation limit (a corrupt header cannot reserve gigabytes).
fn reader(bytes: &[u8]) -> Result<ImageReader<Cursor<&[u8]>>, ImageError> {
    let mut r = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|_| ImageError::Format)?;
    if !r.format().is_some_and(|f| FORMATS.contains(&f)) {
        return Err(ImageError::Format);
    }
    r.limits(image::Limits::default()); // at most 512 MB allocated per decode
    Ok(r)
}

/// Width and height from the header only.
pub fn dimensions(bytes: &[u8]) -> Result<(u32, u32), ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    if is_jpeg(bytes) {
        let (w, h, _) = jpeg_header(bytes)?;
        return Ok((w as u32, h as u32));
    }
    reader(bytes)?
        .into_dimensions()
        .map_err(|e| ImageError::Decode(e.to_string()))
}

/// Decode any supported image to RGB8: first GIF frame, EXIF orientation
/// applied, alpha composited over white, greyscale/CMYK converted as PIL's
/// `convert("RGB")` does.
pub fn decode(bytes: &[u8]) -> Result<RgbImage, ImageError> {
    if is_jpeg(bytes) {
        let mut img = DynamicImage::ImageRgb8(decode_jpeg(bytes)?);
        if let Some(o) = jpeg_orientation(bytes) {
            img.apply_orientation(o);
        }
        return Ok(img.into_rgb8());
    }
    let (w, h) = dimensions(bytes)?;
    check_size(w, h)?;
    check_riff(bytes)?;
    let mut decoder = reader(bytes)?
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

/// A WebP's RIFF sizes must match the file: the RIFF size is the file's
/// length less 8 and every chunk ends inside it (libwebp, hence PIL, refuses
/// other files; the image crate's decoder would read them).
fn check_riff(bytes: &[u8]) -> Result<(), ImageError> {
    if !(bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP")) {
        return Ok(());
    }
    let u32_at = |i: usize| {
        bytes
            .get(i..i + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64)
    };
    let bad = || {
        ImageError::Decode(
            "corrupt WebP: its chunk sizes do not match the file (truncated or damaged)".into(),
        )
    };
    let len = bytes.len() as u64;
    if u32_at(4).ok_or_else(bad)? + 8 != len {
        return Err(bad());
    }
    let mut at = 12u64;
    while at < len {
        let size = u32_at(at as usize + 4).ok_or_else(bad)?;
        at += 8 + size + (size & 1);
        if at > len {
            return Err(bad());
        }
    }
    Ok(())
}

/// The pixel-bomb guard, from the header's size, before decoding.
fn check_size(w: u32, h: u32) -> Result<(), ImageError> {
    if w == 0 || h == 0 {
        return Err(ImageError::Decode("zero-sized image".into()));
    }
    if w > MAX_SIDE || h > MAX_SIDE || (w as u64) * (h as u64) > MAX_PIXELS {
        return Err(ImageError::TooLarge(w, h));
    }
    Ok(())
}

thread_local! {
    static DECOMPRESSOR: std::cell::RefCell<Option<turbojpeg::Decompressor>> =
        const { std::cell::RefCell::new(None) };
}

/// Run `f` with this thread's TurboJPEG decompressor (created once).
fn with_decompressor<T>(
    f: impl FnOnce(&mut turbojpeg::Decompressor) -> Result<T, turbojpeg::Error>,
) -> Result<T, turbojpeg::Error> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(turbojpeg::Decompressor::new()?);
        }
        let r = f(slot.as_mut().expect("set above"));
        if r.is_err() {
            // After an error libjpeg's state is not reset: a later, valid
            // file would fail with the earlier file's error ("Bogus DQT
            // index"). Start the next decode with a fresh decompressor.
            *slot = None;
        }
        r
    })
}

/// The EXIF orientation of a JPEG: its APP1 "Exif" segment, found by
/// walking the marker segments before the first scan.
fn jpeg_orientation(bytes: &[u8]) -> Option<image::metadata::Orientation> {
    let mut i = 2;
    while i + 4 <= bytes.len() && bytes[i] == 0xFF {
        let marker = bytes[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            return None; // start of scan / end of image
        }
        let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
        let payload = bytes.get(i + 4..i + 2 + len)?;
        if marker == 0xE1 && payload.starts_with(b"Exif\0\0") {
            return image::metadata::Orientation::from_exif_chunk(&payload[6..]);
        }
        i += 2 + len;
    }
    None
}

fn jpeg_message(e: turbojpeg::Error) -> String {
    match e {
        turbojpeg::Error::TurboJpegError(m) => m,
        e => e.to_string(),
    }
}

/// The starts of libjpeg's warning messages (jerror.h's JWRN_*).
const LIBJPEG_WARNINGS: &[&str] = &[
    "Corrupt JPEG data",
    "Warning:",
    "Unknown Adobe color transform",
    "Inconsistent progression sequence",
    "Invalid SOS parameters",
    "Application transferred too many scanlines",
];

fn is_libjpeg_warning(m: &str) -> bool {
    LIBJPEG_WARNINGS.iter().any(|w| m.starts_with(w))
}

/// Width, height and whether the JPEG is CMYK/YCCK. When libjpeg warns while
/// reading the header (extraneous bytes before a marker: PIL goes on),
/// TurboJPEG gives no header; the sizes then come from the image crate's
/// parser (colour: not CMYK).
fn jpeg_header(bytes: &[u8]) -> Result<(usize, usize, bool), ImageError> {
    match with_decompressor(|d| d.read_header(bytes)) {
        Ok(h) => Ok((
            h.width,
            h.height,
            matches!(
                h.colorspace,
                turbojpeg::Colorspace::CMYK | turbojpeg::Colorspace::YCCK
            ),
        )),
        Err(e) => {
            let m = jpeg_message(e);
            if !is_libjpeg_warning(&m) {
                return Err(ImageError::Decode(m));
            }
            let (w, h) = ImageReader::with_format(Cursor::new(bytes), ImageFormat::Jpeg)
                .into_dimensions()
                .map_err(|_| ImageError::Decode(m))?;
            Ok((w as usize, h as usize, false))
        }
    }
}

/// libjpeg-turbo with TurboJPEG's defaults, which are PIL's: accurate
/// integer IDCT, fancy (triangular) chroma upsampling. Greyscale expands to
/// RGB by repetition; CMYK and YCCK come out as CMYK, inverted (PIL assumes
/// Adobe's convention for every CMYK JPEG) and converted as PIL does.
/// libjpeg's warnings pass as PIL lets them pass, except a premature end
/// of the file: a truncated JPEG is refused (PIL: "image file is truncated").
fn decode_jpeg(bytes: &[u8]) -> Result<RgbImage, ImageError> {
    let (w, h, cmyk) = jpeg_header(bytes)?;
    check_size(w as u32, h as u32)?;
    let format = if cmyk {
        turbojpeg::PixelFormat::CMYK
    } else {
        turbojpeg::PixelFormat::RGB
    };
    let mut out = turbojpeg::Image {
        pixels: vec![0u8; w * h * format.size()],
        width: w,
        pitch: w * format.size(),
        height: h,
        format,
    };
    if let Err(e) = with_decompressor(|d| d.decompress(bytes, out.as_deref_mut())) {
        // TurboJPEG reports libjpeg's warnings like errors, but with the
        // image decoded; they are told apart by libjpeg's message texts.
        let m = jpeg_message(e);
        if m.starts_with("Premature end of JPEG file") {
            return Err(ImageError::Decode(
                "truncated JPEG (premature end of file)".into(),
            ));
        }
        if !is_libjpeg_warning(&m) {
            return Err(ImageError::Decode(m));
        }
    }
    let pixels = if cmyk {
        out.pixels.chunks_exact(4).flat_map(cmyk_to_rgb).collect()
    } else {
        out.pixels
    };
    Ok(RgbImage::from_raw(w as u32, h as u32, pixels).expect("w*h*3 bytes"))
}

/// PIL's CMYK;I unpacking (255 - v) followed by its `cmyk2rgb`:
/// channel = (255 - k) - (c * (255 - k)) / 255, rounded PIL's way.
fn cmyk_to_rgb(raw: &[u8]) -> [u8; 3] {
    // Inverted: c = 255 - raw[c], k = 255 - raw[3]; nk = 255 - k = raw[3].
    let nk = raw[3] as u32;
    let mul_div_255 = |a: u32, b: u32| {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    };
    std::array::from_fn(|c| (nk - mul_div_255(255 - raw[c] as u32, nk)) as u8)
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

/// torchvision's `Resize(resize)` size: the shorter side becomes `resize`,
/// the longer `floor(resize * long / short)`.
pub fn resized_size((w, h): (u32, u32), resize: u32) -> (u32, u32) {
    let long = |l: u32, s: u32| ((l as u64 * resize as u64) / s as u64).max(resize as u64) as u32;
    if w <= h {
        (resize, long(h, w))
    } else {
        (long(w, h), resize)
    }
}

/// torchvision's `CenterCrop` offset: `round((size - crop) / 2)`, halves to even.
pub fn centre_offset(size: u32, crop: u32) -> u32 {
    let d = size.saturating_sub(crop);
    let half = d / 2;
    if d % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

/// Resize the shorter side to `resize`, then centre-crop `crop`x`crop`
/// (torchvision's `Resize(resize)` + `CenterCrop(crop)` on a PIL image).
pub fn resize_crop(img: &RgbImage, resize: u32, crop: u32) -> RgbImage {
    fit_crop(img, Fit::Crop, Filter::Bilinear, resize, crop)
}

/// `fit` the image to `resize` with PIL's `filter`, then centre-crop
/// `crop`x`crop` (torchvision's `CenterCrop`).
pub fn fit_crop(img: &RgbImage, fit: Fit, filter: Filter, resize: u32, crop: u32) -> RgbImage {
    let (nw, nh) = fit.size(img.dimensions(), resize);
    let resized = resample::resize(img, nw, nh, filter);
    let (x, y) = (centre_offset(nw, crop), centre_offset(nh, crop));
    image::imageops::crop_imm(&resized, x, y, crop, crop).to_image()
}

/// Map a point of the original image to the model crop's pixel coordinates
/// (shorter side resized to `resize`, centre `size`x`size` crop).
pub fn map_point(orig: (u32, u32), resize: u32, size: u32, p: (f64, f64)) -> (f64, f64) {
    fit_point(orig, Fit::Crop, resize, size, p)
}

fn fit_point(orig: (u32, u32), fit: Fit, resize: u32, size: u32, p: (f64, f64)) -> (f64, f64) {
    let (nw, nh) = fit.size(orig, resize);
    let (sx, sy) = (nw as f64 / orig.0 as f64, nh as f64 / orig.1 as f64);
    (
        p.0 * sx - centre_offset(nw, size) as f64,
        p.1 * sy - centre_offset(nh, size) as f64,
    )
}

/// How the image is brought to `resize` before the centre crop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// The shorter side to `resize` (torchvision's `Resize(n)`), aspect kept.
    #[default]
    Crop,
    /// The whole image to `resize`x`resize`, aspect ignored (PIL's
    /// `img.resize((n, n))`, torchvision's `Resize((n, n))`).
    Squash,
}

impl Fit {
    /// The resized image's size.
    pub fn size(self, orig: (u32, u32), resize: u32) -> (u32, u32) {
        match self {
            Fit::Crop => resized_size(orig, resize),
            Fit::Squash => (resize, resize),
        }
    }
}

impl std::str::FromStr for Fit {
    type Err = String;
    fn from_str(s: &str) -> Result<Fit, String> {
        match s {
            "crop" => Ok(Fit::Crop),
            "squash" => Ok(Fit::Squash),
            _ => Err(format!("unknown fit {s:?}; choose crop or squash")),
        }
    }
}

impl std::fmt::Display for Fit {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self {
            Fit::Crop => "crop",
            Fit::Squash => "squash",
        })
    }
}

/// How an image becomes a network's input (from the model's manifest):
/// `fit` to `resize` with PIL's `filter`, centre crop `input_size`,
/// (p - mean) / std, channels reversed for BGR networks.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocess {
    pub input_size: u32,
    pub resize: u32,
    pub fit: Fit,
    pub filter: Filter,
    pub mean: [f64; 3],
    pub std: [f64; 3],
    pub bgr: bool,
    /// 1-channel networks: the image converted as PIL's `convert("L")`
    /// before resizing.
    pub grey: bool,
}

/// PIL's `convert("L")`: ITU-R 601-2 luma with Pillow's integer rounding
/// (`(r·19595 + g·38470 + b·7471 + 0x8000) >> 16`), kept in all three channels.
pub fn grey(img: &RgbImage) -> RgbImage {
    let mut out = img.clone();
    for p in out.pixels_mut() {
        let [r, g, b] = p.0.map(|v| v as u32);
        let l = ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16) as u8;
        p.0 = [l, l, l];
    }
    out
}

impl Preprocess {
    /// The networks trained here: shorter side to `side`, centre crop,
    /// bilinear, RGB, ImageNet's mean and std.
    pub fn imagenet(side: u32) -> Preprocess {
        Preprocess {
            input_size: side,
            resize: side,
            fit: Fit::Crop,
            filter: Filter::Bilinear,
            mean: MEAN,
            std: STD,
            bgr: false,
            grey: false,
        }
    }

    /// The crop the model sees (shown to people as is; grey when grey).
    pub fn crop(&self, img: &RgbImage) -> RgbImage {
        let fit =
            |img: &RgbImage| fit_crop(img, self.fit, self.filter, self.resize, self.input_size);
        if self.grey {
            return fit(&grey(img));
        }
        fit(img)
    }
    /// The crop as the network's [3, S, S] input ([1, S, S] when grey).
    pub fn tensor(&self, crop: &RgbImage) -> Tensor {
        let t = to_tensor(crop, &self.mean, &self.std);
        if self.grey {
            t.narrow(0, 0, 1)
        } else if self.bgr {
            t.flip([0])
        } else {
            t
        }
    }
    /// For people: "shorter side to 256 (bilinear), centre crop 224, RGB".
    pub fn describe(&self) -> String {
        let fit = match self.fit {
            Fit::Crop => format!("shorter side to {}", self.resize),
            Fit::Squash => format!("squash to {0}×{0}", self.resize),
        };
        let crop = if self.resize == self.input_size && self.fit == Fit::Squash {
            String::new()
        } else {
            format!(", centre crop {}", self.input_size)
        };
        let channels = if self.grey {
            "grey"
        } else if self.bgr {
            "BGR"
        } else {
            "RGB"
        };
        // (p - mean) / std on 0..1 pixels: one number when the three agree.
        let num = |v: f64| {
            let s = format!("{v:.5}");
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        };
        let rgb = |v: &[f64; 3]| {
            if v.iter().all(|x| (x - v[0]).abs() < 1e-12) {
                num(v[0])
            } else {
                v.map(num).join(",")
            }
        };
        let (mean, std) = (rgb(&self.mean), rgb(&self.std));
        format!(
            "{fit} ({}){crop}, {channels}, mean {mean} std {std}",
            self.filter
        )
    }

    /// A point of the original image in crop pixels.
    pub fn map_point(&self, orig: (u32, u32), p: (f64, f64)) -> (f64, f64) {
        fit_point(orig, self.fit, self.resize, self.input_size, p)
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

/// ImageNet's channel mean and standard deviation (RGB, 0..1): the
/// normalisation of the networks trained here.
pub const MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const STD: [f64; 3] = [0.229, 0.224, 0.225];

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
