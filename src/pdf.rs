//! A PDF report's pages, written with `pdf-writer` and the base-14 fonts
//! (`F1` Helvetica, `F2` Helvetica-Bold, `F3` Courier): text in, pages
//! (text, rectangles, lines, PNG pictures) and the finished file out. Used
//! by the what-if meeting pack and the quality evidence pack.

use std::path::Path;

use pdf_writer::{Content, Filter, Finish, Name, Pdf, Rect, Ref, Str};

/// A4 portrait, points.
pub const PAGE_W: f32 = 595.0;
pub const PAGE_H: f32 = 842.0;
pub const MARGIN: f32 = 42.0;

/// Text for the base-14 Helvetica fonts (WinAnsi): Latin-1 as is, a few
/// typographic signs mapped, anything else spelled out or '?'.
pub fn win_ansi(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\u{20}'..='\u{7e}' => out.push(c as u8),
            '\u{a0}'..='\u{ff}' => out.push(c as u32 as u8),
            '—' => out.push(0x97),
            '–' => out.push(0x96),
            '…' => out.push(0x85),
            '’' => out.push(0x92),
            '‘' => out.push(0x91),
            '“' => out.push(0x93),
            '”' => out.push(0x94),
            '•' => out.push(0x95),
            'Δ' => out.extend_from_slice(b"diff "),
            '→' => out.extend_from_slice(b"->"),
            '≥' => out.extend_from_slice(b">="),
            '≤' => out.extend_from_slice(b"<="),
            _ => out.push(b'?'),
        }
    }
    out
}

/// Helvetica's average glyph width, for wrapping (em fraction).
const AVG_EM: f32 = 0.5;

pub fn wrap(text: &str, size: f32, width: f32) -> Vec<String> {
    let max = (width / (size * AVG_EM)).max(10.0) as usize;
    let mut lines = Vec::new();
    for para in text.split('\n') {
        let mut line = String::new();
        for w in para.split(' ') {
            if !line.is_empty() && line.chars().count() + 1 + w.chars().count() > max {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(w);
        }
        lines.push(line);
    }
    lines
}

/// A page being written: its content and where the next line goes.
pub struct Page {
    pub c: Content,
    pub y: f32,
    pub images: Vec<usize>,
}

impl Page {
    pub fn new() -> Self {
        Page {
            c: Content::new(),
            y: PAGE_H - MARGIN,
            images: Vec::new(),
        }
    }
    pub fn text(&mut self, x: f32, y: f32, font: &[u8], size: f32, s: &str) {
        self.c.begin_text();
        self.c.set_font(Name(font), size);
        self.c.set_fill_rgb(0.1, 0.1, 0.12);
        self.c.next_line(x, y);
        self.c.show(Str(&win_ansi(s)));
        self.c.end_text();
    }
    /// A paragraph at the left margin, wrapped.
    pub fn para(&mut self, font: &[u8], size: f32, s: &str) {
        for line in wrap(s, size, PAGE_W - 2.0 * MARGIN) {
            self.text(MARGIN, self.y - size, font, size, &line);
            self.y -= size * 1.35;
        }
    }
    pub fn gap(&mut self, pt: f32) {
        self.y -= pt;
    }
    pub fn rect(&mut self, x: f32, y: f32, w: f32, h: f32, rgb: [f32; 3]) {
        self.c.set_fill_rgb(rgb[0], rgb[1], rgb[2]);
        self.c.rect(x, y, w, h);
        self.c.fill_nonzero();
    }
    pub fn line(&mut self, a: (f32, f32), b: (f32, f32), width: f32, grey: f32) {
        self.c.set_stroke_rgb(grey, grey, grey);
        self.c.set_line_width(width);
        self.c.move_to(a.0, a.1);
        self.c.line_to(b.0, b.1);
        self.c.stroke();
    }
}

impl Default for Page {
    fn default() -> Self {
        Self::new()
    }
}

/// A PNG as 8-bit RGB.
pub fn read_png(path: &Path) -> Option<(u32, u32, Vec<u8>)> {
    let img = image::open(path).ok()?.to_rgb8();
    let (w, h) = img.dimensions();
    Some((w, h, img.into_raw()))
}

/// The PDF from its pages and the images they show (`Im<k>` is image k);
/// each page's footer reads "<kind> — <title> — page k of n".
pub fn assemble(
    pages: Vec<Page>,
    images: &[(u32, u32, Vec<u8>, String)],
    kind: &str,
    title: &str,
) -> Vec<u8> {
    let mut pdf = Pdf::new();
    let mut next = 1;
    let mut alloc = || {
        let r = Ref::new(next);
        next += 1;
        r
    };
    let catalog = alloc();
    let tree = alloc();
    let info = alloc();
    let fonts = [alloc(), alloc(), alloc()];
    let image_ids: Vec<Ref> = images.iter().map(|_| alloc()).collect();
    let page_ids: Vec<(Ref, Ref)> = pages.iter().map(|_| (alloc(), alloc())).collect();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(page_ids.iter().map(|p| p.0))
        .count(page_ids.len() as i32);
    pdf.document_info(info)
        .title(pdf_writer::TextStr(title))
        .producer(pdf_writer::TextStr(concat!(
            "Mezzanine ",
            env!("CARGO_PKG_VERSION")
        )));
    for (id, name) in fonts
        .iter()
        .zip([&b"Helvetica"[..], b"Helvetica-Bold", b"Courier"])
    {
        pdf.type1_font(*id)
            .base_font(Name(name))
            .encoding_predefined(Name(b"WinAnsiEncoding"));
    }
    for ((w, h, rgb, _), id) in images.iter().zip(&image_ids) {
        let data = miniz_oxide::deflate::compress_to_vec_zlib(rgb, 6);
        let mut x = pdf.image_xobject(*id, &data);
        x.filter(Filter::FlateDecode);
        x.width(*w as i32);
        x.height(*h as i32);
        x.color_space().device_rgb();
        x.bits_per_component(8);
        x.finish();
    }
    let total = pages.len();
    for (k, (page, (pid, cid))) in pages.into_iter().zip(&page_ids).enumerate() {
        let mut c = page.c;
        // Footer: page k of n.
        c.begin_text();
        c.set_font(Name(b"F1"), 7.5);
        c.set_fill_rgb(0.45, 0.45, 0.5);
        c.next_line(MARGIN, 22.0);
        c.show(Str(&win_ansi(&format!(
            "{kind} — {} — page {} of {total}",
            title,
            k + 1
        ))));
        c.end_text();
        let bytes = c.finish();
        let mut pg = pdf.page(*pid);
        pg.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H));
        pg.parent(tree);
        pg.contents(*cid);
        let mut res = pg.resources();
        res.fonts()
            .pair(Name(b"F1"), fonts[0])
            .pair(Name(b"F2"), fonts[1])
            .pair(Name(b"F3"), fonts[2]);
        if !page.images.is_empty() {
            let mut xo = res.x_objects();
            for i in &page.images {
                xo.pair(Name(format!("Im{i}").as_bytes()), image_ids[*i]);
            }
        }
        res.finish();
        pg.finish();
        pdf.stream(*cid, &bytes);
    }
    pdf.finish()
}
