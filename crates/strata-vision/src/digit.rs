//! Turning an image someone hands over into what an MNIST-style model was trained on.
//!
//! MNIST's digits were made from bilevel scans: each digit was fitted into a 20×20 box keeping
//! its aspect ratio (the anti-aliasing of that resize gives the grey edges), then placed in the
//! 28×28 field so that its centre of mass sits in the middle, white on black (LeCun, Cortes and
//! Burges, "The MNIST database"). A digit drawn on a canvas or photographed on paper is
//! nothing like that as it is: it sits anywhere on a large, usually light page, with strokes of
//! any thickness. Resizing the whole picture to 28×28 gives a small, thin, off-centre digit that
//! the network has never seen the like of. [`mnist_style`] redoes what MNIST's makers did:
//!
//! 1. the page is turned grey (transparent pixels are paper), the paper is told from the ink by
//!    Otsu's threshold and the border (the side most of the border is on; where a photo's
//!    border is half table, the side most of the page is on), uneven lighting is divided out
//!    (the paper's level fitted by a smooth surface), and the ink is what Otsu's threshold then
//!    sets apart from the paper;
//! 2. specks far from the main ink and thin artefacts along the border (the edge of a sheet in
//!    a photo, a scanner's shadow) are dropped;
//! 3. the ink's bounding box is resampled so that its longer side is 200 px, and thresholded
//!    there: ink becomes full white and paper black whatever the pen and the lighting;
//! 4. strokes thinner or thicker than most of MNIST's are thickened or thinned (through a
//!    distance transform of that high-resolution mask) until, once shrunk, their width is
//!    within the middle half of MNIST's ([`MNIST_STROKE_QUARTILES`], measured on the training
//!    set with [`stroke_width`]): a fine pen and a fat marker both look like MNIST's pencil;
//! 5. the result is area-averaged into the 20×20 box (its longer side 20 px) and placed in the
//!    28×28 field by its centre of mass, as MNIST's digits are.
//!
//! [`fashion_style`] does what Fashion-MNIST's makers did to product photos instead: the object
//! is trimmed to its bounding box, its longer side is resized to 28 px, and it is centred, light
//! on dark, keeping its shading. [`plain_resize`] is the plain whole-image resize, for inputs
//! that are neither.
//!
//! ```no_run
//! let img = image::open("my-digit.png")?;
//! let pixels = strata_vision::digit::mnist_style(&img)?; // 784 bytes, light on dark
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::VecDeque;

/// Side of the MNIST field.
pub const SIDE: usize = 28;

/// Longer side of the box MNIST's digits were fitted into.
pub const BOX: usize = 20;

/// Quartiles of MNIST's stroke width over its 60,000 training digits, in pixels of the 28×28
/// field, as [`stroke_width`] measures it (twice the ink over the length of its outline). The
/// test `mnist_stroke_width_is_measured` checks them against the data. Strokes outside the
/// first and third quartiles are brought to the nearer one (bringing every digit to the median
/// instead thinned bold digits more than needed: with two models, 2 and 4 fewer of 160
/// rendered digits were read right).
pub const MNIST_STROKE_QUARTILES: [f32; 3] = [2.01, 2.36, 2.78];

/// Longer side, in pixels, of the high-resolution crop the ink is thresholded and thickened in
/// (ten times the 20-pixel box, so that the area averaging down to it anti-aliases well).
const HIGH_RES: f64 = 200.0;

/// Longest side of the working copy of the page (larger photos are area-averaged down first).
const WORK_SIDE: usize = 1024;

/// Least difference between the ink's and the paper's mean level (full scale = 1) for the
/// image to hold any ink at all.
const MIN_CONTRAST: f32 = 0.12;

/// Why an image holds no digit to read; each reads as one line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DigitError {
    /// The image has no pixels.
    #[error("the image is empty (it has no pixels)")]
    Empty,
    /// Nothing stands out from the paper.
    #[error(
        "no ink found: the image is blank, or its strokes hardly differ from the paper or are too small to read"
    )]
    Blank,
}

/// A grey plane of `f32` values, row-major.
#[derive(Debug, Clone)]
struct Plane {
    w: usize,
    h: usize,
    data: Vec<f32>,
}

impl Plane {
    fn new(w: usize, h: usize) -> Self {
        Self {
            w,
            h,
            data: vec![0.0; w * h],
        }
    }

    fn at(&self, x: usize, y: usize) -> f32 {
        self.data[y * self.w + x]
    }
}

/// A rectangle of pixels, `x0..x1` × `y0..y1`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rect {
    x0: usize,
    y0: usize,
    x1: usize,
    y1: usize,
}

impl Rect {
    fn width(&self) -> usize {
        self.x1 - self.x0
    }

    fn height(&self) -> usize {
        self.y1 - self.y0
    }

    fn longer(&self) -> usize {
        self.width().max(self.height())
    }

    fn union(&self, o: &Rect) -> Rect {
        Rect {
            x0: self.x0.min(o.x0),
            y0: self.y0.min(o.y0),
            x1: self.x1.max(o.x1),
            y1: self.y1.max(o.y1),
        }
    }

    /// Pixels between the two rectangles (0 when they touch or overlap).
    fn gap(&self, o: &Rect) -> usize {
        let dx =
            o.x0.saturating_sub(self.x1)
                .max(self.x0.saturating_sub(o.x1));
        let dy =
            o.y0.saturating_sub(self.y1)
                .max(self.y0.saturating_sub(o.y1));
        dx.max(dy)
    }
}

/// A page read for ink: the working copy in ink units (0 = paper, 1 = ink) and the ink kept.
struct Ink {
    /// Ink level of every pixel of the working copy: 0 at the paper's level, 1 at the ink's.
    level: Plane,
    /// Level above which a pixel is ink (Otsu's threshold in ink units).
    threshold: f32,
    /// The pixels of the kept ink (the digit or the object), without specks and artefacts.
    kept: Vec<bool>,
    /// Their bounding box.
    bbox: Rect,
}

/// The 784 pixels (row-major, 0–255, light on dark) an MNIST model expects for the digit in
/// `img`, made as MNIST's digits were made (see the [module docs](self)).
///
/// Any size, colour type and polarity is accepted: a dark digit on white paper, a light one on a
/// blackboard, a drawing with a transparent background. A page without ink is
/// [`DigitError::Blank`].
pub fn mnist_style(img: &image::DynamicImage) -> Result<Vec<u8>, DigitError> {
    let ink = find_ink(img, false)?;
    let fitted = fit_strokes(&high_res_mask(&ink));
    Ok(place_by_mass(&fitted))
}

/// The 784 pixels (row-major, 0–255, light on dark) a Fashion-MNIST model expects for the object
/// in `img`, made as Fashion-MNIST's were: trimmed to the object, its longer side resized to 28
/// px (area averaging), centred, the object light on a black background with its own shading.
pub fn fashion_style(img: &image::DynamicImage) -> Result<Vec<u8>, DigitError> {
    let ink = find_ink(img, true)?;
    let b = ink.bbox;
    // Only the kept object: specks and border artefacts become background.
    let mut level = ink.level.clone();
    for (v, &k) in level.data.iter_mut().zip(&ink.kept) {
        if !k {
            *v = 0.0;
        }
    }
    let step = b.longer() as f64 / SIDE as f64;
    let (w, h) = (b.width() as f64 / step, b.height() as f64 / step);
    // Centred: the object's box in the middle of the field.
    let x0 = b.x0 as f64 - (SIDE as f64 - w) / 2.0 * step;
    let y0 = b.y0 as f64 - (SIDE as f64 - h) / 2.0 * step;
    let out = resample(&level, x0, y0, step, step, SIDE, SIDE);
    // Contrast as Fashion-MNIST's: the brightest part of the object is full white.
    let top = out.data.iter().copied().fold(0.0f32, f32::max).max(1e-6);
    Ok(out.data.iter().map(|&v| to_byte(v / top)).collect())
}

/// The whole image turned grey (transparent pixels composited onto white), resized to
/// `side × side`, and inverted when its border is light: what predictions did before
/// [`mnist_style`], and what is still done for inputs that are not MNIST-style.
pub fn plain_resize(img: &image::DynamicImage, side: u32) -> Vec<u8> {
    let rgba = img.to_rgba8();
    let grey = image::GrayImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let luma = 0.299 * r as f32 + 0.587 * g as f32 + 0.114 * b as f32;
        let alpha = a as f32 / 255.0;
        image::Luma([(luma * alpha + 255.0 * (1.0 - alpha)).round() as u8])
    });
    let grey = image::imageops::resize(&grey, side, side, image::imageops::FilterType::Triangle);
    let mut pixels = grey.into_raw();
    let side = side as usize;
    let mut sum = 0u64;
    let mut count = 0u64;
    for y in 0..side {
        for x in 0..side {
            if y == 0 || x == 0 || y + 1 == side || x + 1 == side {
                sum += pixels[y * side + x] as u64;
                count += 1;
            }
        }
    }
    if sum as f32 / count.max(1) as f32 > 127.0 {
        pixels.iter_mut().for_each(|p| *p = 255 - *p);
    }
    pixels
}

/// Stroke width of a light-on-dark grey image (`side × side`, 0–255): twice its ink over the
/// length of its outline (the image's total variation), in pixels. For a stroke of width `w`
/// and length `l ≫ w`, the ink is `w·l` and the outline `2·l`.
pub fn stroke_width(pixels: &[u8], side: usize) -> f32 {
    let v = |x: usize, y: usize| pixels[y * side + x] as f32 / 255.0;
    let mut ink = 0.0;
    let mut outline = 0.0;
    for y in 0..=side {
        for x in 0..=side {
            let here = if x < side && y < side { v(x, y) } else { 0.0 };
            let left = if x > 0 && y < side { v(x - 1, y) } else { 0.0 };
            let up = if y > 0 && x < side { v(x, y - 1) } else { 0.0 };
            ink += here;
            outline += ((here - left).powi(2) + (here - up).powi(2)).sqrt();
        }
    }
    if outline > 0.0 {
        2.0 * ink / outline
    } else {
        0.0
    }
}

fn to_byte(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// The page as a grey plane in [0, 1] at its own size: Rec. 601 luma, transparent pixels
/// taken as paper. A page whose border is mostly transparent (a drawing exported from a
/// canvas) is read by its opacity alone: whatever was painted is ink.
fn grey_page(img: &image::DynamicImage) -> Plane {
    let rgba = img.to_rgba8();
    let (w, h) = (rgba.width() as usize, rgba.height() as usize);
    let px = |x: usize, y: usize| rgba.get_pixel(x as u32, y as u32).0;
    let luma =
        |p: [u8; 4]| (0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32) / 255.0;
    let border: Vec<[u8; 4]> = border_pixels(w, h).map(|(x, y)| px(x, y)).collect();
    let transparent = border.iter().filter(|p| p[3] < 128).count();
    let mut plane = Plane::new(w, h);
    if 2 * transparent > border.len() {
        for (i, p) in rgba.pixels().enumerate() {
            plane.data[i] = 1.0 - p.0[3] as f32 / 255.0;
        }
        return plane;
    }
    let mut paper: Vec<f32> = border
        .iter()
        .filter(|p| p[3] >= 128)
        .map(|&p| luma(p))
        .collect();
    let paper = median(&mut paper).unwrap_or(1.0);
    for (i, p) in rgba.pixels().enumerate() {
        let a = p.0[3] as f32 / 255.0;
        plane.data[i] = luma(p.0) * a + paper * (1.0 - a);
    }
    plane
}

/// The coordinates of the outermost ring of pixels of a `w × h` image.
fn border_pixels(w: usize, h: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..h).flat_map(move |y| {
        let whole_row = y == 0 || y + 1 == h || w <= 2;
        let xs = if whole_row { 0..w } else { 0..1 };
        xs.chain(if whole_row { 0..0 } else { w - 1..w })
            .map(move |x| (x, y))
    })
}

fn median(v: &mut [f32]) -> Option<f32> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f32::total_cmp);
    Some(v[v.len() / 2])
}

/// The mean over the `(2r+1)²` square around each pixel (the square cut by the image's edges).
fn box_blur(p: &Plane, r: usize) -> Plane {
    along_rows(
        &transpose(&along_rows(&transpose(p), r, mean_line)),
        r,
        mean_line,
    )
}

fn transpose(p: &Plane) -> Plane {
    let mut out = Plane::new(p.h, p.w);
    for y in 0..p.h {
        for x in 0..p.w {
            out.data[x * p.h + y] = p.at(x, y);
        }
    }
    out
}

/// `line` applied to every row with radius `r`.
fn along_rows(p: &Plane, r: usize, line: fn(&[f32], usize, &mut [f32])) -> Plane {
    let mut out = Plane::new(p.w, p.h);
    for (src, dst) in p.data.chunks(p.w).zip(out.data.chunks_mut(p.w)) {
        line(src, r, dst);
    }
    out
}

/// Running mean over `i - r ..= i + r`, cut at the ends.
fn mean_line(src: &[f32], r: usize, dst: &mut [f32]) {
    let mut prefix = vec![0.0f64; src.len() + 1];
    for (i, &v) in src.iter().enumerate() {
        prefix[i + 1] = prefix[i] + v as f64;
    }
    for (i, d) in dst.iter_mut().enumerate() {
        let (a, b) = (i.saturating_sub(r), (i + r + 1).min(src.len()));
        *d = ((prefix[b] - prefix[a]) / (b - a) as f64) as f32;
    }
}

/// Whether the paper is the light side of threshold `t`: the side most of the border is on, or,
/// where the border is split (a table along two edges of a photo), the side most of the page is
/// on, since ink covers less of a page than paper.
fn paper_is_light(p: &Plane, t: f32) -> bool {
    let share = |it: &mut dyn Iterator<Item = f32>| {
        let (mut light, mut all) = (0usize, 0usize);
        for v in it {
            light += usize::from(v > t);
            all += 1;
        }
        light as f32 / all.max(1) as f32
    };
    let border = share(&mut border_pixels(p.w, p.h).map(|(x, y)| p.at(x, y)));
    if (0.35..=0.65).contains(&border) {
        share(&mut p.data.iter().copied()) > 0.5
    } else {
        border > 0.5
    }
}

/// Divides out uneven lighting, and turns a dark page light: returns the page and its smoothed
/// copy with the paper at about 1 everywhere and the ink darker.
///
/// The paper's level is a quadratic surface in x and y (a lamp's falloff, a shadow's gradient)
/// fitted to the pixels Otsu's threshold calls paper; dividing by it and thresholding again
/// finds the paper the first threshold took for ink on the dark side, and three rounds settle.
fn flatten(page: &Plane, smooth: &Plane, paper_is_light: bool) -> (Plane, Plane) {
    let dark_page = !paper_is_light;
    let light = |p: &Plane| Plane {
        w: p.w,
        h: p.h,
        data: if dark_page {
            p.data.iter().map(|v| 1.0 - v).collect()
        } else {
            p.data.clone()
        },
    };
    let (page, smooth) = (light(page), light(smooth));
    let (w, h) = (page.w, page.h);
    // About 20,000 samples on a regular grid.
    let stride = ((w * h / 20_000) as f64).sqrt().max(1.0) as usize;
    let terms = |x: usize, y: usize| {
        let u = 2.0 * x as f64 / w.max(2) as f64 - 1.0;
        let v = 2.0 * y as f64 / h.max(2) as f64 - 1.0;
        [1.0, u, v, u * u, u * v, v * v]
    };
    let mut paper = Plane {
        w,
        h,
        data: vec![1.0; w * h],
    };
    let mut flat = smooth.clone();
    for _ in 0..3 {
        let Some((t, _, _)) = otsu(&flat.data) else {
            break;
        };
        // Least squares over the paper's samples: normal equations, solved by elimination.
        let (mut ata, mut atb) = ([[0.0f64; 6]; 6], [0.0f64; 6]);
        let (mut lo, mut hi, mut n) = (f32::MAX, f32::MIN, 0usize);
        for y in (0..h).step_by(stride) {
            for x in (0..w).step_by(stride) {
                if flat.at(x, y) <= t {
                    continue;
                }
                let (a, b) = (terms(x, y), smooth.at(x, y));
                for i in 0..6 {
                    for j in 0..6 {
                        ata[i][j] += a[i] * a[j];
                    }
                    atb[i] += a[i] * b as f64;
                }
                lo = lo.min(b);
                hi = hi.max(b);
                n += 1;
            }
        }
        let Some(c) = solve6(ata, atb).filter(|_| n >= 24) else {
            break;
        };
        // Within the levels the paper has: no wild extrapolation where there is none.
        for y in 0..h {
            for x in 0..w {
                let a = terms(x, y);
                let level: f64 = a.iter().zip(&c).map(|(a, c)| a * c).sum();
                paper.data[y * w + x] = (level as f32).clamp(lo, hi).max(0.02);
            }
        }
        flat = divide(&smooth, &paper);
    }
    (divide(&page, &paper), flat)
}

fn divide(p: &Plane, by: &Plane) -> Plane {
    Plane {
        w: p.w,
        h: p.h,
        data: p
            .data
            .iter()
            .zip(&by.data)
            .map(|(&v, &b)| (v / b).clamp(0.0, 1.0))
            .collect(),
    }
}

/// Solves the 6×6 system `a·x = b` by Gaussian elimination with partial pivoting; `None` when
/// it is singular.
fn solve6(mut a: [[f64; 6]; 6], mut b: [f64; 6]) -> Option<[f64; 6]> {
    for col in 0..6 {
        let pivot = (col..6).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-9 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        for row in col + 1..6 {
            let f = a[row][col] / a[col][col];
            let pivot_row = a[col];
            for (v, p) in a[row].iter_mut().zip(pivot_row).skip(col) {
                *v -= f * p;
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = [0.0; 6];
    for row in (0..6).rev() {
        let s: f64 = (row + 1..6).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    Some(x)
}

/// Otsu's threshold of values in [0, 1] (256 bins): the level that best splits them in two
/// classes, with each class's mean; `None` when the values are all alike.
fn otsu(values: &[f32]) -> Option<(f32, f32, f32)> {
    let mut hist = [0u64; 256];
    for &v in values {
        hist[(v.clamp(0.0, 1.0) * 255.0).round() as usize] += 1;
    }
    let total = values.len() as f64;
    let sum: f64 = hist
        .iter()
        .enumerate()
        .map(|(i, &c)| i as f64 * c as f64)
        .sum();
    let (mut w0, mut s0) = (0.0f64, 0.0f64);
    let mut best: Option<(f64, usize, f64, f64)> = None;
    for (t, &c) in hist.iter().enumerate().take(255) {
        w0 += c as f64;
        s0 += t as f64 * c as f64;
        let w1 = total - w0;
        if w0 == 0.0 || w1 == 0.0 {
            continue;
        }
        let (m0, m1) = (s0 / w0, (sum - s0) / w1);
        let between = w0 * w1 * (m0 - m1).powi(2);
        if best.is_none_or(|b| between > b.0) {
            best = Some((between, t, m0, m1));
        }
    }
    // The threshold lies between bin t and t + 1.
    best.map(|(_, t, m0, m1)| {
        (
            (t as f32 + 0.5) / 255.0,
            m0 as f32 / 255.0,
            m1 as f32 / 255.0,
        )
    })
}

/// One 8-connected component of the ink mask.
#[derive(Debug, Clone)]
struct Component {
    pixels: Vec<usize>,
    bbox: Rect,
    /// Pixels within the border band.
    on_border: usize,
}

fn components(mask: &[bool], w: usize, h: usize, band: usize) -> Vec<Component> {
    let mut seen = vec![false; mask.len()];
    let mut out = Vec::new();
    let mut queue = VecDeque::new();
    for start in 0..mask.len() {
        if !mask[start] || seen[start] {
            continue;
        }
        seen[start] = true;
        queue.push_back(start);
        let mut c = Component {
            pixels: Vec::new(),
            bbox: Rect {
                x0: usize::MAX,
                y0: usize::MAX,
                x1: 0,
                y1: 0,
            },
            on_border: 0,
        };
        while let Some(i) = queue.pop_front() {
            let (x, y) = (i % w, i / w);
            c.pixels.push(i);
            c.bbox.x0 = c.bbox.x0.min(x);
            c.bbox.y0 = c.bbox.y0.min(y);
            c.bbox.x1 = c.bbox.x1.max(x + 1);
            c.bbox.y1 = c.bbox.y1.max(y + 1);
            if x < band || y < band || x + band >= w || y + band >= h {
                c.on_border += 1;
            }
            for dy in -1isize..=1 {
                for dx in -1isize..=1 {
                    let (xx, yy) = (x as isize + dx, y as isize + dy);
                    if xx < 0 || yy < 0 || xx >= w as isize || yy >= h as isize {
                        continue;
                    }
                    let j = yy as usize * w + xx as usize;
                    if mask[j] && !seen[j] {
                        seen[j] = true;
                        queue.push_back(j);
                    }
                }
            }
        }
        out.push(c);
    }
    out
}

/// Reads the page: paper level, polarity, threshold, and the ink worth keeping.
///
/// `object` keeps every sizeable part however far from the main one (a pair of straps, a
/// sandal's sole); a digit keeps only the parts near its main stroke.
fn find_ink(img: &image::DynamicImage, object: bool) -> Result<Ink, DigitError> {
    if img.width() == 0 || img.height() == 0 {
        return Err(DigitError::Empty);
    }
    let page = grey_page(img);
    // A working copy of at most WORK_SIDE px a side, area-averaged.
    let longest = page.w.max(page.h);
    let page = if longest > WORK_SIDE {
        let step = longest as f64 / WORK_SIDE as f64;
        let (w, h) = (
            ((page.w as f64 / step).round() as usize).max(1),
            ((page.h as f64 / step).round() as usize).max(1),
        );
        resample(
            &page,
            0.0,
            0.0,
            page.w as f64 / w as f64,
            page.h as f64 / h as f64,
            w,
            h,
        )
    } else {
        page
    };
    let (w, h) = (page.w, page.h);
    // Noise is smoothed before thresholding, where there are pixels enough to spare.
    let smooth = if w.min(h) >= 64 {
        box_blur(&page, 1)
    } else {
        page.clone()
    };
    let (t, _, _) = otsu(&smooth.data).ok_or(DigitError::Blank)?;
    let paper_is_light = paper_is_light(&smooth, t);
    // A digit's page is lit unevenly in a photo, and is made light; an object fills much of its
    // picture, which a product photo lights evenly.
    let (page, smooth, paper_is_light) = if object {
        (page, smooth, paper_is_light)
    } else {
        let (page, smooth) = flatten(&page, &smooth, paper_is_light);
        (page, smooth, true)
    };
    let (t, dark_mean, light_mean) = otsu(&smooth.data).ok_or(DigitError::Blank)?;
    if light_mean - dark_mean < MIN_CONTRAST {
        return Err(DigitError::Blank);
    }
    let (paper, ink) = if paper_is_light {
        (light_mean, dark_mean)
    } else {
        (dark_mean, light_mean)
    };
    let to_ink = |v: f32| ((v - paper) / (ink - paper)).clamp(0.0, 1.0);
    let level = Plane {
        w,
        h,
        data: page.data.iter().map(|&v| to_ink(v)).collect(),
    };
    let threshold = (t - paper) / (ink - paper);
    let mask: Vec<bool> = smooth.data.iter().map(|&v| to_ink(v) > threshold).collect();

    // Artefacts lie mostly along the border: the edge of a sheet, a shadow, a table.
    let band = (w.min(h) / 25).max(2);
    let comps = components(&mask, w, h, band);
    let is_artefact = |c: &Component| 2 * c.on_border >= c.pixels.len();
    let mut candidates: Vec<&Component> = comps.iter().filter(|c| !is_artefact(c)).collect();
    if candidates.is_empty() {
        // A digit cropped so tightly that it is all border: keep it.
        candidates = comps.iter().collect();
    }
    candidates.sort_by_key(|c| std::cmp::Reverse(c.pixels.len()));
    let main = candidates.first().ok_or(DigitError::Blank)?;
    let min_area = (main.pixels.len() / if object { 100 } else { 50 }).max(2);
    let mut taken = vec![false; candidates.len()];
    taken[0] = true;
    let mut bbox = main.bbox;
    loop {
        let mut grew = false;
        for (i, c) in candidates.iter().enumerate() {
            if taken[i] || c.pixels.len() < min_area {
                continue;
            }
            if object || c.bbox.gap(&bbox) * 10 <= bbox.longer() * 3 {
                taken[i] = true;
                bbox = bbox.union(&c.bbox);
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    // Too small to be a digit: a speck on a blank page.
    if bbox.longer() < 4.max(w.max(h) / 50) {
        return Err(DigitError::Blank);
    }
    let mut kept = vec![false; w * h];
    for (c, _) in candidates.iter().zip(&taken).filter(|(_, t)| **t) {
        for &i in &c.pixels {
            kept[i] = true;
        }
    }
    Ok(Ink {
        level,
        threshold,
        kept,
        bbox,
    })
}

/// The kept ink, resampled so that its bounding box's longer side is [`HIGH_RES`] px (with a
/// margin for thickening) and thresholded there.
fn high_res_mask(ink: &Ink) -> Mask {
    let b = ink.bbox;
    let step = b.longer() as f64 / HIGH_RES; // working px per high-res px
    let margin = HIGH_RES * 0.2;
    let w = (b.width() as f64 / step + 2.0 * margin).ceil() as usize;
    let h = (b.height() as f64 / step + 2.0 * margin).ceil() as usize;
    let x0 = b.x0 as f64 - margin * step;
    let y0 = b.y0 as f64 - margin * step;
    let level = resample(&ink.level, x0, y0, step, step, w, h);
    // The kept components, grown by a working pixel so their anti-aliased rims stay.
    let (lw, lh) = (ink.level.w, ink.level.h);
    let mut kept = Plane::new(lw, lh);
    for y in 0..lh {
        for x in 0..lw {
            let near = (y.saturating_sub(1)..(y + 2).min(lh))
                .any(|yy| (x.saturating_sub(1)..(x + 2).min(lw)).any(|xx| ink.kept[yy * lw + xx]));
            kept.data[y * lw + x] = if near { 1.0 } else { 0.0 };
        }
    }
    let kept = resample(&kept, x0, y0, step, step, w, h);
    let data = level
        .data
        .iter()
        .zip(&kept.data)
        .map(|(&v, &k)| v > ink.threshold && k >= 0.5)
        .collect();
    Mask { w, h, data }
}

/// A binary image.
struct Mask {
    w: usize,
    h: usize,
    data: Vec<bool>,
}

/// Squared Euclidean distance of every pixel to the nearest `true` one (Felzenszwalb and
/// Huttenlocher's linear-time transform, one axis after the other).
fn distance_sq(mask: &[bool], w: usize, h: usize) -> Vec<f64> {
    const FAR: f64 = 1e12;
    let mut d: Vec<f64> = mask.iter().map(|&m| if m { 0.0 } else { FAR }).collect();
    let n = w.max(h);
    let (mut f, mut out) = (vec![0.0; n], vec![0.0; n]);
    let (mut v, mut z) = (vec![0usize; n], vec![0.0; n + 1]);
    let mut line = |f: &[f64], out: &mut [f64]| {
        let n = f.len();
        let mut k = 0;
        v[0] = 0;
        z[0] = f64::NEG_INFINITY;
        z[1] = f64::INFINITY;
        for q in 1..n {
            let qf = q as f64;
            loop {
                let p = v[k] as f64;
                let s = ((f[q] + qf * qf) - (f[v[k]] + p * p)) / (2.0 * qf - 2.0 * p);
                if s <= z[k] {
                    k -= 1;
                } else {
                    k += 1;
                    v[k] = q;
                    z[k] = s;
                    z[k + 1] = f64::INFINITY;
                    break;
                }
            }
        }
        k = 0;
        for (q, o) in out.iter_mut().enumerate().take(n) {
            while z[k + 1] < q as f64 {
                k += 1;
            }
            let dq = q as f64 - v[k] as f64;
            *o = dq * dq + f[v[k]];
        }
    };
    for y in 0..h {
        f[..w].copy_from_slice(&d[y * w..(y + 1) * w]);
        line(&f[..w], &mut out[..w]);
        d[y * w..(y + 1) * w].copy_from_slice(&out[..w]);
    }
    for x in 0..w {
        for y in 0..h {
            f[y] = d[y * w + x];
        }
        line(&f[..h], &mut out[..h]);
        for y in 0..h {
            d[y * w + x] = out[y];
        }
    }
    d
}

/// Thickens (`r > 0`) or thins (`r < 0`) the mask by `r` pixels, anti-aliased: the coverage of
/// each pixel by the ink grown by `r`, from the signed distance to the mask's outline.
fn grown(signed: &[f32], w: usize, h: usize, r: f32) -> Plane {
    Plane {
        w,
        h,
        data: signed
            .iter()
            .map(|&s| (r - s + 0.5).clamp(0.0, 1.0))
            .collect(),
    }
}

/// The digit in its box: the mask's strokes brought within MNIST's usual widths, then
/// area-averaged so that the ink's longer side is [`BOX`] px.
fn fit_strokes(mask: &Mask) -> Plane {
    let (w, h) = (mask.w, mask.h);
    let to_ink = distance_sq(&mask.data, w, h);
    let inverse: Vec<bool> = mask.data.iter().map(|m| !m).collect();
    let to_paper = distance_sq(&inverse, w, h);
    // Signed distance to the outline: negative inside the ink.
    let signed: Vec<f32> = mask
        .data
        .iter()
        .zip(to_ink.iter().zip(&to_paper))
        .map(|(&m, (&di, &dp))| {
            if m {
                0.5 - dp.sqrt() as f32
            } else {
                di.sqrt() as f32 - 0.5
            }
        })
        .collect();
    let mut r = 0.0f32;
    let (mut boxed, mut long) = to_box(&grown(&signed, w, h, r));
    let [low, _, high] = MNIST_STROKE_QUARTILES;
    let target = stroke_width(&place_by_mass(&boxed), SIDE).clamp(low, high);
    let mut least = f32::NEG_INFINITY;
    for _ in 0..6 {
        let measured = stroke_width(&place_by_mass(&boxed), SIDE);
        if (measured - target).abs() < 0.02 || measured == 0.0 {
            break;
        }
        // In mask pixels the ink is `long` long and its strokes `width` wide; growing the
        // strokes by `d` on each side grows both by 2d, and must bring width·BOX/long to the
        // target.
        let width = measured * long / BOX as f32;
        if r == 0.0 {
            // Thinning stops short of erasing the strokes.
            least = -0.35 * width;
        }
        let next =
            (r + (target * long - BOX as f32 * width) / (2.0 * (BOX as f32 - target))).max(least);
        if (next - r).abs() < 0.01 {
            break;
        }
        r = next;
        (boxed, long) = to_box(&grown(&signed, w, h, r));
    }
    boxed
}

/// Area-averages the coverage so that its ink's longer side is [`BOX`] px; returns the box
/// (at most `BOX × BOX`) and the ink's longer side in coverage pixels.
fn to_box(cov: &Plane) -> (Plane, f32) {
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for y in 0..cov.h {
        for x in 0..cov.w {
            if cov.at(x, y) >= 0.5 {
                x0 = x0.min(x);
                y0 = y0.min(y);
                x1 = x1.max(x + 1);
                y1 = y1.max(y + 1);
            }
        }
    }
    if x0 == usize::MAX {
        return (Plane::new(1, 1), 0.0);
    }
    let (bw, bh) = ((x1 - x0) as f64, (y1 - y0) as f64);
    let long = bw.max(bh);
    let step = long / BOX as f64;
    let ow = ((bw / step) - 1e-6).ceil().max(1.0) as usize;
    let oh = ((bh / step) - 1e-6).ceil().max(1.0) as usize;
    // The shorter side sits in the middle of its pixels.
    let ox = x0 as f64 - (ow as f64 * step - bw) / 2.0;
    let oy = y0 as f64 - (oh as f64 * step - bh) / 2.0;
    (resample(cov, ox, oy, step, step, ow, oh), long as f32)
}

/// The box placed in the 28×28 field with its centre of mass on pixel (14, 14), shifted by whole
/// pixels as MNIST's were.
fn place_by_mass(boxed: &Plane) -> Vec<u8> {
    let (mut m, mut mx, mut my) = (0.0f64, 0.0f64, 0.0f64);
    for y in 0..boxed.h {
        for x in 0..boxed.w {
            let v = boxed.at(x, y) as f64;
            m += v;
            mx += v * x as f64;
            my += v * y as f64;
        }
    }
    let centre = (SIDE / 2) as f64;
    let (dx, dy) = if m > 0.0 {
        ((centre - mx / m).round(), (centre - my / m).round())
    } else {
        (4.0, 4.0)
    };
    let mut out = vec![0u8; SIDE * SIDE];
    for y in 0..boxed.h {
        for x in 0..boxed.w {
            let (xx, yy) = (x as f64 + dx, y as f64 + dy);
            if (0.0..SIDE as f64).contains(&xx) && (0.0..SIDE as f64).contains(&yy) {
                out[yy as usize * SIDE + xx as usize] = to_byte(boxed.at(x, y));
            }
        }
    }
    out
}

/// Resamples `src` onto an `out_w × out_h` grid whose pixel `(i, j)` covers source
/// `[x0 + i·sx, x0 + (i+1)·sx) × [y0 + j·sy, ...)`: area averaging when shrinking (each source
/// pixel weighs by how much of it the output pixel covers), bilinear when enlarging. Outside
/// `src` is 0.
fn resample(src: &Plane, x0: f64, y0: f64, sx: f64, sy: f64, out_w: usize, out_h: usize) -> Plane {
    let wx = weights(src.w, x0, sx, out_w);
    let wy = weights(src.h, y0, sy, out_h);
    // Horizontal pass over the rows the vertical pass reads.
    let mut mid = Plane::new(out_w, src.h);
    let rows: Vec<usize> = {
        let mut used = vec![false; src.h];
        for taps in &wy {
            for &(j, _) in taps {
                used[j] = true;
            }
        }
        (0..src.h).filter(|&j| used[j]).collect()
    };
    for &y in &rows {
        let row = &src.data[y * src.w..(y + 1) * src.w];
        for (i, taps) in wx.iter().enumerate() {
            mid.data[y * out_w + i] = taps.iter().map(|&(j, t)| row[j] * t).sum();
        }
    }
    let mut out = Plane::new(out_w, out_h);
    for (o, taps) in wy.iter().enumerate() {
        for i in 0..out_w {
            out.data[o * out_w + i] = taps.iter().map(|&(j, t)| mid.data[j * out_w + i] * t).sum();
        }
    }
    out
}

/// The source taps of each output pixel along one axis (see [`resample`]).
fn weights(n: usize, origin: f64, step: f64, out: usize) -> Vec<Vec<(usize, f32)>> {
    (0..out)
        .map(|i| {
            let a = origin + i as f64 * step;
            let b = a + step;
            let mut taps = Vec::new();
            if step >= 1.0 {
                let first = a.floor().max(0.0) as usize;
                let last = (b.ceil().max(0.0) as usize).min(n);
                for j in first..last {
                    let overlap = (b.min(j as f64 + 1.0) - a.max(j as f64)).max(0.0);
                    if overlap > 0.0 {
                        taps.push((j, (overlap / step) as f32));
                    }
                }
            } else {
                let c = (a + b) / 2.0 - 0.5;
                let j0 = c.floor();
                let t = c - j0;
                for (j, wgt) in [(j0, 1.0 - t), (j0 + 1.0, t)] {
                    if j >= 0.0 && (j as usize) < n && wgt > 0.0 {
                        taps.push((j as usize, wgt as f32));
                    }
                }
            }
            taps
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{DynamicImage, GrayImage, Luma, Rgba, RgbaImage};

    /// Distance from `p` to the segment `a`–`b`.
    fn to_segment(p: (f32, f32), a: (f32, f32), b: (f32, f32)) -> f32 {
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let t = (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / (dx * dx + dy * dy)).clamp(0.0, 1.0);
        ((p.0 - a.0 - t * dx).powi(2) + (p.1 - a.1 - t * dy).powi(2)).sqrt()
    }

    /// Ink coverage of a "7" (two strokes `width` wide) whose box is `size` px high with its
    /// top-left corner at `at`, sampled 4×4 per pixel.
    fn seven(p: (f32, f32), at: (f32, f32), size: f32, width: f32) -> f32 {
        let s = |x: f32, y: f32| (at.0 + x * size, at.1 + y * size);
        let (a, b, c) = (s(0.0, 0.0), s(0.6, 0.0), s(0.2, 1.0));
        let mut inside = 0;
        for i in 0..4 {
            for j in 0..4 {
                let q = (p.0 + (i as f32 + 0.5) / 4.0, p.1 + (j as f32 + 0.5) / 4.0);
                let d = to_segment(q, a, b).min(to_segment(q, b, c));
                inside += usize::from(d <= width / 2.0);
            }
        }
        inside as f32 / 16.0
    }

    /// A grey page `w × h` with paper level `paper` and the "7" drawn in `ink`.
    fn page(
        w: u32,
        h: u32,
        paper: u8,
        ink: u8,
        at: (f32, f32),
        size: f32,
        width: f32,
    ) -> GrayImage {
        GrayImage::from_fn(w, h, |x, y| {
            let c = seven((x as f32, y as f32), at, size, width);
            Luma([(paper as f32 + (ink as f32 - paper as f32) * c).round() as u8])
        })
    }

    fn bbox(pixels: &[u8]) -> (usize, usize) {
        let on = |x: usize, y: usize| pixels[y * SIDE + x] > 0;
        let cols: Vec<usize> = (0..SIDE).filter(|&x| (0..SIDE).any(|y| on(x, y))).collect();
        let rows: Vec<usize> = (0..SIDE).filter(|&y| (0..SIDE).any(|x| on(x, y))).collect();
        (
            cols.last().unwrap() - cols[0] + 1,
            rows.last().unwrap() - rows[0] + 1,
        )
    }

    fn centre_of_mass(pixels: &[u8]) -> (f32, f32) {
        let (mut m, mut mx, mut my) = (0.0, 0.0, 0.0);
        for (i, &p) in pixels.iter().enumerate() {
            let v = p as f32;
            m += v;
            mx += v * (i % SIDE) as f32;
            my += v * (i / SIDE) as f32;
        }
        (mx / m, my / m)
    }

    fn mean_abs_diff(a: &[u8], b: &[u8]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| (x as f32 - y as f32).abs())
            .sum::<f32>()
            / a.len() as f32
    }

    fn assert_mnist_geometry(pixels: &[u8]) {
        assert_eq!(pixels.len(), SIDE * SIDE);
        let (w, h) = bbox(pixels);
        assert!((19..=21).contains(&w.max(h)), "box {w}×{h}");
        let (cx, cy) = centre_of_mass(pixels);
        assert!(
            (cx - 14.0).abs() <= 0.5 && (cy - 14.0).abs() <= 0.5,
            "centre of mass ({cx}, {cy})"
        );
        // Ink is full white, paper black.
        assert_eq!(pixels.iter().max(), Some(&255));
        assert!(pixels.iter().filter(|&&p| p == 0).count() > SIDE * SIDE / 2);
    }

    #[test]
    fn fits_a_dark_digit_into_the_mnist_box_by_mass() {
        let img = DynamicImage::ImageLuma8(page(300, 300, 240, 20, (80.0, 60.0), 180.0, 12.0));
        let pixels = mnist_style(&img).unwrap();
        assert_mnist_geometry(&pixels);
        // A "7" is taller than wide: its height is the 20 px.
        let (w, h) = bbox(&pixels);
        assert!(h >= 19 && w < h, "box {w}×{h}");
        let w = stroke_width(&pixels, SIDE);
        let [low, _, high] = MNIST_STROKE_QUARTILES;
        assert!((low - 0.05..high + 0.05).contains(&w), "strokes {w} px");
    }

    #[test]
    fn polarity_does_not_matter() {
        let dark = DynamicImage::ImageLuma8(page(200, 160, 230, 30, (40.0, 20.0), 120.0, 9.0));
        let light = DynamicImage::ImageLuma8(page(200, 160, 30, 230, (40.0, 20.0), 120.0, 9.0));
        let (a, b) = (mnist_style(&dark).unwrap(), mnist_style(&light).unwrap());
        assert_mnist_geometry(&a);
        assert!(mean_abs_diff(&a, &b) < 1.0, "{}", mean_abs_diff(&a, &b));
    }

    #[test]
    fn finds_an_off_centre_digit_on_a_wide_noisy_photo() {
        // The reference: the digit alone on a clean page.
        let clean = mnist_style(&DynamicImage::ImageLuma8(page(
            160,
            160,
            235,
            40,
            (30.0, 20.0),
            120.0,
            8.0,
        )))
        .unwrap();
        // The same digit near the right of a wide page, with noise, a few specks far from it,
        // and the dark edge of the table along the bottom and left of the photo.
        let mut photo = page(800, 300, 235, 40, (560.0, 90.0), 120.0, 8.0);
        let mut state = 12345u32;
        for p in photo.pixels_mut() {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let noise = ((state >> 16) % 21) as i32 - 10;
            p.0[0] = (p.0[0] as i32 + noise).clamp(0, 255) as u8;
        }
        for (x, y) in [(100, 50), (300, 250), (200, 150), (40, 270)] {
            for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                photo.put_pixel(x + dx, y + dy, Luma([30]));
            }
        }
        for (x, y, p) in photo.enumerate_pixels_mut() {
            if y >= 290 || x < 6 {
                *p = Luma([25]);
            }
        }
        let pixels = mnist_style(&DynamicImage::ImageLuma8(photo)).unwrap();
        assert_mnist_geometry(&pixels);
        let diff = mean_abs_diff(&pixels, &clean);
        assert!(diff < 6.0, "mean difference {diff} from the clean digit");
    }

    #[test]
    fn strokes_are_brought_within_mnist_widths() {
        let [low, median, high] = MNIST_STROKE_QUARTILES;
        // A fine pen, a pencil, a marker and a brush, on a digit 200 px high.
        for (pen, expect) in [(2.0, low), (6.0, low), (34.0, high), (50.0, high)] {
            let img = DynamicImage::ImageLuma8(page(260, 260, 250, 0, (40.0, 30.0), 200.0, pen));
            let pixels = mnist_style(&img).unwrap();
            assert_mnist_geometry(&pixels);
            let w = stroke_width(&pixels, SIDE);
            assert!((w - expect).abs() < 0.1, "pen {pen} px: strokes {w} px");
        }
        // A stroke already as wide as most of MNIST's is left as it is.
        let img = DynamicImage::ImageLuma8(page(260, 260, 250, 0, (40.0, 30.0), 200.0, 28.0));
        let w = stroke_width(&mnist_style(&img).unwrap(), SIDE);
        assert!((w - median).abs() < 0.2, "strokes {w} px");
        // A small digit, upscaled, with a 2-px stroke (one of 17 px high: about 2.4 of 20).
        let img = DynamicImage::ImageLuma8(page(24, 24, 255, 0, (4.0, 3.0), 17.0, 2.0));
        let pixels = mnist_style(&img).unwrap();
        assert_mnist_geometry(&pixels);
        let w = stroke_width(&pixels, SIDE);
        assert!(
            (low - 0.1..high + 0.1).contains(&w),
            "small digit: strokes {w} px"
        );
    }

    #[test]
    fn uneven_lighting_is_divided_out() {
        let clean = mnist_style(&DynamicImage::ImageLuma8(page(
            300,
            240,
            240,
            50,
            (90.0, 40.0),
            160.0,
            10.0,
        )))
        .unwrap();
        // Paper lit from the left: 240 there, 110 on the right, where the ink is lighter
        // than the paper on the left.
        let lit = page(300, 240, 240, 50, (90.0, 40.0), 160.0, 10.0);
        let shaded = GrayImage::from_fn(300, 240, |x, y| {
            let light = 1.0 - 0.55 * x as f32 / 299.0;
            Luma([(lit.get_pixel(x, y).0[0] as f32 * light).round() as u8])
        });
        let pixels = mnist_style(&DynamicImage::ImageLuma8(shaded)).unwrap();
        assert_mnist_geometry(&pixels);
        let diff = mean_abs_diff(&pixels, &clean);
        assert!(
            diff < 4.0,
            "mean difference {diff} from the evenly lit digit"
        );
        // A page with nothing but a shadow is blank.
        let shadow = GrayImage::from_fn(300, 240, |x, _| Luma([(240.0 - 0.4 * x as f32) as u8]));
        assert_eq!(
            mnist_style(&DynamicImage::ImageLuma8(shadow)),
            Err(DigitError::Blank)
        );
    }

    #[test]
    fn transparent_canvas_is_paper() {
        let drawn = page(150, 150, 0, 255, (30.0, 20.0), 110.0, 8.0);
        // Black strokes on a transparent background, and white strokes on one.
        for colour in [0u8, 255] {
            let img = RgbaImage::from_fn(150, 150, |x, y| {
                Rgba([colour, colour, colour, drawn.get_pixel(x, y).0[0]])
            });
            let pixels = mnist_style(&DynamicImage::ImageRgba8(img)).unwrap();
            assert_mnist_geometry(&pixels);
            let opaque = mnist_style(&DynamicImage::ImageLuma8(drawn.clone())).unwrap();
            assert!(mean_abs_diff(&pixels, &opaque) < 1.0);
        }
    }

    #[test]
    fn blank_images_are_a_clear_error() {
        let white = DynamicImage::ImageLuma8(GrayImage::from_pixel(120, 80, Luma([250])));
        assert_eq!(mnist_style(&white), Err(DigitError::Blank));
        let mut state = 7u32;
        let noisy = GrayImage::from_fn(300, 200, |_, _| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            Luma([200 + ((state >> 16) % 16) as u8])
        });
        assert_eq!(
            mnist_style(&DynamicImage::ImageLuma8(noisy)),
            Err(DigitError::Blank)
        );
        let clear = DynamicImage::ImageRgba8(RgbaImage::new(64, 64));
        assert_eq!(mnist_style(&clear), Err(DigitError::Blank));
        assert_eq!(fashion_style(&clear), Err(DigitError::Blank));
        let empty = DynamicImage::ImageLuma8(GrayImage::new(0, 0));
        assert_eq!(mnist_style(&empty), Err(DigitError::Empty));
        let message = DigitError::Blank.to_string();
        assert!(message.starts_with("no ink found") && !message.contains('\n'));
    }

    #[test]
    fn fashion_objects_fill_the_field_centred() {
        // A dark, wide object (a bag) on a white page, shaded left to right.
        let img = GrayImage::from_fn(400, 300, |x, y| {
            let inside = (100..340).contains(&x) && (120..240).contains(&y);
            Luma([if inside {
                20 + (x - 100) as u8 / 4
            } else {
                250
            }])
        });
        let pixels = fashion_style(&DynamicImage::ImageLuma8(img)).unwrap();
        let (w, h) = bbox(&pixels);
        assert!((27..=28).contains(&w) && (13..=15).contains(&h), "{w}×{h}");
        let rows: Vec<usize> = (0..SIDE).filter(|&y| pixels[y * SIDE + 14] > 0).collect();
        let middle = (rows[0] + rows.last().unwrap()) as f32 / 2.0;
        assert!((middle - 13.5).abs() <= 1.0, "rows {rows:?}");
        // Its shading is kept: darker on the page, lighter in the field.
        assert!(pixels[14 * SIDE + 2] > pixels[14 * SIDE + 25]);
        assert_eq!(pixels.iter().max(), Some(&255));
    }

    #[test]
    fn plain_resize_inverts_light_pages() {
        let img = DynamicImage::ImageLuma8(page(56, 56, 255, 0, (10.0, 8.0), 40.0, 6.0));
        let pixels = plain_resize(&img, 28);
        assert_eq!(pixels.len(), 784);
        assert_eq!(pixels[0], 0);
    }

    #[test]
    fn distance_transform_is_euclidean() {
        let (w, h) = (7, 5);
        let mut mask = vec![false; w * h];
        mask[2 * w + 3] = true;
        let d = distance_sq(&mask, w, h);
        for y in 0..h {
            for x in 0..w {
                let expect = (x as f64 - 3.0).powi(2) + (y as f64 - 2.0).powi(2);
                assert_eq!(d[y * w + x], expect, "({x}, {y})");
            }
        }
    }

    #[test]
    fn mnist_stroke_width_is_measured() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/mnist");
        let splits =
            crate::mnist::MnistSplits::read_dir(crate::mnist::MnistKind::Mnist, &dir, 0).unwrap();
        let mut widths: Vec<f32> = (0..splits.train.len())
            .map(|i| stroke_width(splits.train.image(i), SIDE))
            .collect();
        widths.sort_by(f32::total_cmp);
        let quartile = |q: usize| widths[widths.len() * q / 4];
        let measured = [quartile(1), quartile(2), quartile(3)];
        for (m, q) in measured.iter().zip(MNIST_STROKE_QUARTILES) {
            assert!((m - q).abs() < 0.01, "quartiles {measured:?}");
        }
    }
}
