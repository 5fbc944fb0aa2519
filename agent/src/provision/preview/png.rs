//! SVG → PNG with resvg (pure Rust). Text needs a font: the system's are loaded once
//! (DejaVu Sans on Debian and Ubuntu, `fonts-dejavu-core`, which `scripts/services.sh
//! install` makes sure of); none is downloaded, and a machine without fonts gets PNGs
//! without text rather than an error.

use resvg::{tiny_skia, usvg};

/// Rasterises SVG documents.
#[derive(Debug)]
pub(crate) struct Rasterizer {
    options: usvg::Options<'static>,
}

impl Rasterizer {
    /// Loads the system's fonts (tens of milliseconds; once per run).
    pub(crate) fn new() -> Self {
        let mut options = usvg::Options::default();
        let fonts = options.fontdb_mut();
        fonts.load_system_fonts();
        // Generic families resolve to DejaVu where it is installed, as in Chromium on
        // Debian, so the PNG and the HTML page look alike.
        if fonts
            .faces()
            .any(|face| face.families.iter().any(|(name, _)| name == "DejaVu Sans"))
        {
            fonts.set_sans_serif_family("DejaVu Sans");
            fonts.set_monospace_family("DejaVu Sans Mono");
        }
        Self { options }
    }

    /// Whether any font was found (without one, text is not drawn).
    pub(crate) fn has_fonts(&self) -> bool {
        !self.options.fontdb.is_empty()
    }

    /// The PNG of `svg`.
    pub(crate) fn png(&self, svg: &str) -> Result<Vec<u8>, String> {
        let tree = usvg::Tree::from_str(svg, &self.options).map_err(|e| e.to_string())?;
        let size = tree.size().to_int_size();
        let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
            .ok_or_else(|| format!("cannot allocate {}x{}", size.width(), size.height()))?;
        resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
        pixmap.encode_png().map_err(|e| e.to_string())
    }
}
