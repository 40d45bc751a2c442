//! Pictures for the figures: a list of shapes, text and images drawn once
//! and rendered two ways, as PNG (pixels; text in embedded-graphics' mono
//! fonts, so no font file is needed) and as SVG (text stays text). Plots and
//! tables are built from these items.

use base64::Engine as _;
use embedded_graphics::mono_font::{ascii, MonoFont, MonoTextStyle};
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{Line, PrimitiveStyle, Rectangle};
use embedded_graphics::text::{Alignment, Baseline, Text, TextStyleBuilder};
use image::RgbImage;

pub type Colour = [u8; 3];
pub const BLACK: Colour = [0, 0, 0];
pub const GREY: Colour = [120, 120, 120];
pub const LIGHT: Colour = [225, 225, 225];
pub const WHITE: Colour = [255, 255, 255];
/// Series colours (Tableau 10's first five).
pub const SERIES: [Colour; 5] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
];

#[derive(Clone, Copy, PartialEq)]
pub enum Size {
    /// 7x13 px per character.
    Small,
    /// 9x15 bold.
    Title,
}

impl Size {
    fn font(self) -> &'static MonoFont<'static> {
        match self {
            Size::Small => &ascii::FONT_7X13,
            Size::Title => &ascii::FONT_9X15_BOLD,
        }
    }
    /// Width of one character in px.
    pub fn char_w(self) -> i32 {
        self.font().character_size.width as i32
    }
    pub fn line_h(self) -> i32 {
        self.font().character_size.height as i32 + 3
    }
}

#[derive(Clone, Copy, PartialEq)]
pub enum Anchor {
    Start,
    Middle,
    End,
}

enum Item {
    Rect {
        x: i32,
        y: i32,
        w: u32,
        h: u32,
        fill: Option<Colour>,
        stroke: Option<Colour>,
    },
    Line {
        pts: Vec<(i32, i32)>,
        colour: Colour,
        width: u32,
    },
    Text {
        x: i32,
        y: i32,
        text: String,
        size: Size,
        anchor: Anchor,
        colour: Colour,
    },
    Image {
        x: i32,
        y: i32,
        img: RgbImage,
    },
}

/// A picture of `w` x `h` px on white.
pub struct Drawing {
    pub w: u32,
    pub h: u32,
    items: Vec<Item>,
}

impl Drawing {
    pub fn new(w: u32, h: u32) -> Drawing {
        Drawing {
            w,
            h,
            items: vec![],
        }
    }

    pub fn rect(
        &mut self,
        x: i32,
        y: i32,
        w: u32,
        h: u32,
        fill: Option<Colour>,
        stroke: Option<Colour>,
    ) {
        self.items.push(Item::Rect {
            x,
            y,
            w,
            h,
            fill,
            stroke,
        });
    }

    pub fn line(&mut self, pts: Vec<(i32, i32)>, colour: Colour, width: u32) {
        self.items.push(Item::Line { pts, colour, width });
    }

    /// Text whose top is at `y`.
    pub fn text(&mut self, x: i32, y: i32, text: impl Into<String>, size: Size, anchor: Anchor) {
        self.text_in(x, y, text, size, anchor, BLACK);
    }

    pub fn text_in(
        &mut self,
        x: i32,
        y: i32,
        text: impl Into<String>,
        size: Size,
        anchor: Anchor,
        colour: Colour,
    ) {
        // The mono fonts have ASCII glyphs only.
        let text: String = text
            .into()
            .chars()
            .map(|c| {
                if c.is_ascii() && !c.is_ascii_control() {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        self.items.push(Item::Text {
            x,
            y,
            text,
            size,
            anchor,
            colour,
        });
    }

    pub fn image(&mut self, x: i32, y: i32, img: RgbImage) {
        self.items.push(Item::Image { x, y, img });
    }

    pub fn png(&self) -> Vec<u8> {
        let mut px = Pixels(RgbImage::from_pixel(self.w, self.h, WHITE.into()));
        for it in &self.items {
            let _ = match it {
                Item::Rect {
                    x,
                    y,
                    w,
                    h,
                    fill,
                    stroke,
                } => {
                    let mut s = PrimitiveStyle::new();
                    s.fill_color = fill.map(rgb);
                    if let Some(c) = stroke {
                        s.stroke_color = Some(rgb(*c));
                        s.stroke_width = 1;
                    }
                    Rectangle::new(Point::new(*x, *y), Size2::new(*w, *h))
                        .into_styled(s)
                        .draw(&mut px)
                }
                Item::Line { pts, colour, width } => {
                    for p in pts.windows(2) {
                        let _ = Line::new(Point::new(p[0].0, p[0].1), Point::new(p[1].0, p[1].1))
                            .into_styled(PrimitiveStyle::with_stroke(rgb(*colour), *width))
                            .draw(&mut px);
                    }
                    Ok(())
                }
                Item::Text {
                    x,
                    y,
                    text,
                    size,
                    anchor,
                    colour,
                } => {
                    let style = MonoTextStyle::new(size.font(), rgb(*colour));
                    let ts = TextStyleBuilder::new()
                        .alignment(match anchor {
                            Anchor::Start => Alignment::Left,
                            Anchor::Middle => Alignment::Center,
                            Anchor::End => Alignment::Right,
                        })
                        .baseline(Baseline::Top)
                        .build();
                    Text::with_text_style(text, Point::new(*x, *y), style, ts)
                        .draw(&mut px)
                        .map(|_| ())
                }
                Item::Image { x, y, img } => {
                    image::imageops::overlay(&mut px.0, img, *x as i64, *y as i64);
                    Ok(())
                }
            };
        }
        crate::picture::png(&px.0)
    }

    pub fn svg(&self) -> String {
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">\n\
             <rect width=\"{w}\" height=\"{h}\" fill=\"#fff\"/>\n",
            w = self.w,
            h = self.h
        );
        for it in &self.items {
            match it {
                Item::Rect {
                    x,
                    y,
                    w,
                    h,
                    fill,
                    stroke,
                } => s += &format!(
                    "<rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" fill=\"{}\" stroke=\"{}\"/>\n",
                    fill.map_or("none".into(), hex),
                    stroke.map_or("none".into(), hex)
                ),
                Item::Line { pts, colour, width } => {
                    let p: Vec<String> = pts.iter().map(|(x, y)| format!("{x},{y}")).collect();
                    s += &format!(
                        "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{width}\"/>\n",
                        p.join(" "),
                        hex(*colour)
                    );
                }
                Item::Text {
                    x,
                    y,
                    text,
                    size,
                    anchor,
                    colour,
                } => {
                    let (px, weight) = match size {
                        Size::Small => (12, "normal"),
                        Size::Title => (14, "bold"),
                    };
                    s += &format!(
                        "<text x=\"{x}\" y=\"{y}\" font-family=\"monospace\" font-size=\"{px}\" font-weight=\"{weight}\" \
                         dominant-baseline=\"hanging\" text-anchor=\"{}\" fill=\"{}\">{}</text>\n",
                        match anchor {
                            Anchor::Start => "start",
                            Anchor::Middle => "middle",
                            Anchor::End => "end",
                        },
                        hex(*colour),
                        escape(text)
                    );
                }
                Item::Image { x, y, img } => {
                    s += &format!(
                        "<image x=\"{x}\" y=\"{y}\" width=\"{}\" height=\"{}\" href=\"data:image/png;base64,{}\"/>\n",
                        img.width(),
                        img.height(),
                        base64::engine::general_purpose::STANDARD.encode(crate::picture::png(img))
                    );
                }
            }
        }
        s + "</svg>\n"
    }
}

type Size2 = embedded_graphics::geometry::Size;

fn rgb(c: Colour) -> Rgb888 {
    Rgb888::new(c[0], c[1], c[2])
}

fn hex(c: Colour) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

/// Text for XML and HTML.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

struct Pixels(RgbImage);

impl OriginDimensions for Pixels {
    fn size(&self) -> Size2 {
        Size2::new(self.0.width(), self.0.height())
    }
}

impl DrawTarget for Pixels {
    type Color = Rgb888;
    type Error = std::convert::Infallible;

    fn draw_iter<I: IntoIterator<Item = Pixel<Rgb888>>>(
        &mut self,
        pixels: I,
    ) -> Result<(), Self::Error> {
        let (w, h) = self.0.dimensions();
        for Pixel(p, c) in pixels {
            if p.x >= 0 && p.y >= 0 && (p.x as u32) < w && (p.y as u32) < h {
                self.0
                    .put_pixel(p.x as u32, p.y as u32, [c.r(), c.g(), c.b()].into());
            }
        }
        Ok(())
    }
}

// ---- plots and tables ----------------------------------------------------------

/// One line of a plot.
pub struct Series<'a> {
    pub name: &'a str,
    pub ys: &'a [f64],
}

/// Tick label: few digits, no trailing noise.
pub fn num(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if v.abs() >= 0.01 && v.abs() < 1e5 {
        // Three significant digits, trailing zeros of the fraction dropped.
        let digits = (2 - v.abs().log10().floor() as i32).clamp(0, 4) as usize;
        let s = format!("{v:.digits$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    } else {
        format!("{v:.1e}")
    }
}

/// A line plot in the box (x, y, w, h): title above, axes with their end
/// values, one polyline per series (legend at the top right when several).
#[allow(clippy::too_many_arguments)]
pub fn plot(
    d: &mut Drawing,
    (x, y, w, h): (i32, i32, i32, i32),
    title: &str,
    xlabel: &str,
    xs: &[f64],
    series: &[Series],
    y_range: Option<(f64, f64)>,
) {
    d.text(x + w / 2, y, title, Size::Small, Anchor::Middle);
    let (l, t, r, b) = (x + 58, y + 18, x + w - 8, y + h - 40);
    d.rect(l, t, (r - l) as u32, (b - t) as u32, None, Some(GREY));
    let finite = |v: &&f64| v.is_finite();
    let (x0, x1) = (
        xs.iter()
            .filter(finite)
            .cloned()
            .fold(f64::INFINITY, f64::min),
        xs.iter()
            .filter(finite)
            .cloned()
            .fold(f64::NEG_INFINITY, f64::max),
    );
    let (y0, y1) = y_range.unwrap_or_else(|| {
        let all = series.iter().flat_map(|s| s.ys.iter()).filter(finite);
        let lo = all.clone().cloned().fold(f64::INFINITY, f64::min).min(0.0);
        let hi = all.cloned().fold(f64::NEG_INFINITY, f64::max);
        (lo, if hi > lo { hi } else { lo + 1.0 })
    });
    if !(x0.is_finite() && x1.is_finite()) {
        return;
    }
    let sx = |v: f64| l + ((v - x0) / (x1 - x0).max(1e-12) * (r - l) as f64).round() as i32;
    let sy = |v: f64| b - ((v - y0) / (y1 - y0).max(1e-12) * (b - t) as f64).round() as i32;
    d.text(l - 3, t - 2, num(y1), Size::Small, Anchor::End);
    d.text(l - 3, b - 12, num(y0), Size::Small, Anchor::End);
    d.text(l, b + 3, num(x0), Size::Small, Anchor::Start);
    d.text(r, b + 3, num(x1), Size::Small, Anchor::End);
    d.text((l + r) / 2, b + 15, xlabel, Size::Small, Anchor::Middle);
    for (i, s) in series.iter().enumerate() {
        let c = SERIES[i % SERIES.len()];
        let pts: Vec<(i32, i32)> = xs
            .iter()
            .zip(s.ys)
            .filter(|(a, v)| a.is_finite() && v.is_finite())
            .map(|(&a, &v)| (sx(a), sy(v.clamp(y0, y1))))
            .collect();
        d.line(pts, c, 2);
        if series.len() > 1 {
            let ly = t + 4 + 14 * i as i32;
            d.line(vec![(r - 70, ly + 6), (r - 56, ly + 6)], c, 2);
            d.text(r - 52, ly, s.name, Size::Small, Anchor::Start);
        }
    }
}

/// A table at (x, y): header row in bold, one line per row, columns as wide
/// as their longest cell. Returns its (width, height) in px.
pub fn table(d: &mut Drawing, x: i32, y: i32, header: &[&str], rows: &[Vec<String>]) -> (i32, i32) {
    let cw = Size::Small.char_w();
    let widths: Vec<i32> = (0..header.len())
        .map(|c| {
            let n = rows
                .iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.len())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0);
            n as i32 * cw + 16
        })
        .collect();
    let lh = Size::Small.line_h() + 2;
    let total: i32 = widths.iter().sum();
    d.rect(x, y, total as u32, lh as u32, Some(LIGHT), None);
    let mut cx = x;
    for (c, head) in header.iter().enumerate() {
        d.text(cx + 6, y + 3, *head, Size::Small, Anchor::Start);
        for (r, row) in rows.iter().enumerate() {
            if let Some(s) = row.get(c) {
                d.text(
                    cx + 6,
                    y + 3 + lh * (r as i32 + 1),
                    s.clone(),
                    Size::Small,
                    Anchor::Start,
                );
            }
        }
        cx += widths[c];
    }
    let h = lh * (rows.len() as i32 + 1);
    d.line(vec![(x, y + h), (x + total, y + h)], GREY, 1);
    (total, h)
}

/// Measure: width in px of `s` in `size`.
pub fn text_w(s: &str, size: Size) -> i32 {
    s.len() as i32 * size.char_w()
}

#[cfg(test)]
mod tests {
    #[test]
    fn tick_labels() {
        let cases = [
            (0.0, "0"),
            (360.0, "360"),
            (1.8, "1.8"),
            (-60.0, "-60"),
            (687.076, "687"),
            (0.0594, "0.0594"),
            (4.42, "4.42"),
            (1e6, "1.0e6"),
            (0.001, "1.0e-3"),
        ];
        for (v, want) in cases {
            assert_eq!(super::num(v), want, "{v}");
        }
    }
}
