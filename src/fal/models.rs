//! The FLUX.2 model catalogue: which models exist, what each accepts, what it
//! costs, and the normalised input that exact validation ([`validate`]) produces. Shared by the
//! simulator and by fluxgate's own API, so both reject and price a request the same way.
use serde::Serialize;
use serde_json::{json, Map, Value};

#[cfg(test)]
mod tests;
mod validate;

pub use validate::{known_fields, validate, FieldError};

/// The model used when a caller names none.
pub const DEFAULT_MODEL: &str = "fal-ai/flux-2/turbo";

/// 1 MP as fal bills it: 1024 × 1024 pixels.
pub const MEGAPIXEL: u64 = 1_048_576;

/// Which input schema a model takes: Turbo and Flash share one; [dev] adds two fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaKind {
    /// `fal-ai/flux-2/turbo` and `fal-ai/flux-2/flash` (and their edits).
    Fast,
    /// `fal-ai/flux-2` [dev]: adds `acceleration` and `num_inference_steps`.
    Dev,
}

/// One FLUX.2 endpoint on fal's queue.
#[derive(Debug, PartialEq, Eq)]
pub struct Model {
    /// fal's model id, the path after the queue host: `fal-ai/flux-2/turbo`.
    pub id: &'static str,
    pub is_edit: bool,
    pub schema: SchemaKind,
    /// Micro-USD per billed megapixel.
    pub price_per_mp_micro_usd: u64,
}

/// Every model fluxgate accepts, in the order documentation lists them.
pub static MODELS: &[Model] = &[
    Model::new("fal-ai/flux-2/turbo", false, SchemaKind::Fast, 8_000),
    Model::new("fal-ai/flux-2/turbo/edit", true, SchemaKind::Fast, 8_000),
    Model::new("fal-ai/flux-2/flash", false, SchemaKind::Fast, 5_000),
    Model::new("fal-ai/flux-2/flash/edit", true, SchemaKind::Fast, 5_000),
    Model::new("fal-ai/flux-2", false, SchemaKind::Dev, 12_000),
    Model::new("fal-ai/flux-2/edit", true, SchemaKind::Dev, 12_000),
];

impl Model {
    const fn new(id: &'static str, is_edit: bool, schema: SchemaKind, price: u64) -> Self {
        Model {
            id,
            is_edit,
            schema,
            price_per_mp_micro_usd: price,
        }
    }

    /// The catalogue entry for a fal model id, if fluxgate knows it.
    pub fn lookup(id: &str) -> Option<&'static Model> {
        MODELS.iter().find(|m| m.id == id)
    }

    /// fal's edit endpoints default to a square canvas, text-to-image to 4:3 landscape.
    pub fn default_image_size(&self) -> ImagePreset {
        if self.is_edit {
            ImagePreset::SquareHd
        } else {
            ImagePreset::Landscape4_3
        }
    }

    /// `owner/app` — the prefix fal's status/response/cancel URLs keep (they drop the subpath).
    pub fn queue_app(&self) -> &'static str {
        app_prefix(self.id)
    }

    /// What a normalised input to this model costs, in micro-USD.
    pub fn price_micro_usd(&self, input: &NormalizedInput) -> u64 {
        input.megapixels_billed() * self.price_per_mp_micro_usd
    }
}

/// The first two path segments of a model id (`fal-ai/flux-2/turbo` → `fal-ai/flux-2`).
pub fn app_prefix(model_id: &str) -> &str {
    match model_id.match_indices('/').nth(1) {
        Some((i, _)) => &model_id[..i],
        None => model_id,
    }
}

/// fal's named canvas sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImagePreset {
    SquareHd,
    Square,
    #[serde(rename = "portrait_4_3")]
    Portrait4_3,
    #[serde(rename = "portrait_16_9")]
    Portrait16_9,
    #[serde(rename = "landscape_4_3")]
    Landscape4_3,
    #[serde(rename = "landscape_16_9")]
    Landscape16_9,
}

impl ImagePreset {
    pub const ALL: [ImagePreset; 6] = [
        ImagePreset::SquareHd,
        ImagePreset::Square,
        ImagePreset::Portrait4_3,
        ImagePreset::Portrait16_9,
        ImagePreset::Landscape4_3,
        ImagePreset::Landscape16_9,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ImagePreset::SquareHd => "square_hd",
            ImagePreset::Square => "square",
            ImagePreset::Portrait4_3 => "portrait_4_3",
            ImagePreset::Portrait16_9 => "portrait_16_9",
            ImagePreset::Landscape4_3 => "landscape_4_3",
            ImagePreset::Landscape16_9 => "landscape_16_9",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// The pixels fal renders for this preset.
    pub fn size(self) -> ImageSize {
        let (width, height) = match self {
            ImagePreset::SquareHd => (1024, 1024),
            ImagePreset::Square => (512, 512),
            ImagePreset::Portrait4_3 => (768, 1024),
            ImagePreset::Portrait16_9 => (576, 1024),
            ImagePreset::Landscape4_3 => (1024, 768),
            ImagePreset::Landscape16_9 => (1024, 576),
        };
        ImageSize { width, height }
    }
}

/// A canvas in pixels; custom sides are 512–2048.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct ImageSize {
    pub width: u32,
    pub height: u32,
}

impl ImageSize {
    pub const MIN_SIDE: u32 = 512;
    pub const MAX_SIDE: u32 = 2048;

    /// Whole megapixels billed for one image of this size: rounded up, at least 1.
    pub fn megapixels(self) -> u64 {
        let pixels = u64::from(self.width) * u64::from(self.height);
        pixels.div_ceil(MEGAPIXEL).max(1)
    }
}

/// `output_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Jpeg,
    #[default]
    Png,
    Webp,
}

impl OutputFormat {
    pub const ALL: [OutputFormat; 3] = [OutputFormat::Jpeg, OutputFormat::Png, OutputFormat::Webp];

    pub fn as_str(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "jpeg",
            OutputFormat::Png => "png",
            OutputFormat::Webp => "webp",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == name)
    }

    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::Png => "image/png",
            OutputFormat::Webp => "image/webp",
        }
    }

    /// File extension for served files.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "jpg",
            OutputFormat::Png => "png",
            OutputFormat::Webp => "webp",
        }
    }
}

/// `acceleration` of FLUX.2 [dev].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Acceleration {
    None,
    #[default]
    Regular,
    High,
}

impl Acceleration {
    pub const ALL: [Acceleration; 3] = [
        Acceleration::None,
        Acceleration::Regular,
        Acceleration::High,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Acceleration::None => "none",
            Acceleration::Regular => "regular",
            Acceleration::High => "high",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

/// A validated input with every default filled in. Its `Serialize` form is the normalised view
/// (canvas in pixels, preset remembered beside it); [`NormalizedInput::to_fal_json`] is the exact
/// body to send to fal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NormalizedInput {
    pub prompt: String,
    pub image_size: ImageSize,
    /// The preset the caller named, if any (fal receives the name, not the pixels).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_size_preset: Option<ImagePreset>,
    pub guidance_scale: f64,
    pub num_images: u32,
    /// `None`: fal picks one (and reports it in the output).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    pub output_format: OutputFormat,
    pub enable_safety_checker: bool,
    pub enable_prompt_expansion: bool,
    pub sync_mode: bool,
    /// Edit models only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_urls: Option<Vec<String>>,
    /// [dev] only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acceleration: Option<Acceleration>,
    /// [dev] only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_inference_steps: Option<u32>,
}

impl NormalizedInput {
    /// Megapixels billed: each image rounded up (min 1) × `num_images`, plus 1 per edit source.
    pub fn megapixels_billed(&self) -> u64 {
        let sources = self.image_urls.as_ref().map_or(0, Vec::len);
        megapixels_billed(self.image_size, self.num_images, sources)
    }

    /// The body to POST to fal: every field explicit, so fal's own defaults can never drift
    /// from what fluxgate estimated; the seed only when the caller chose one.
    pub fn to_fal_json(&self) -> Value {
        let mut body = Map::new();
        body.insert("prompt".into(), json!(self.prompt));
        let size = match self.image_size_preset {
            Some(preset) => json!(preset.as_str()),
            None => json!({"width": self.image_size.width, "height": self.image_size.height}),
        };
        body.insert("image_size".into(), size);
        body.insert("guidance_scale".into(), json!(self.guidance_scale));
        body.insert("num_images".into(), json!(self.num_images));
        if let Some(seed) = self.seed {
            body.insert("seed".into(), json!(seed));
        }
        body.insert("output_format".into(), json!(self.output_format.as_str()));
        body.insert(
            "enable_safety_checker".into(),
            json!(self.enable_safety_checker),
        );
        body.insert(
            "enable_prompt_expansion".into(),
            json!(self.enable_prompt_expansion),
        );
        body.insert("sync_mode".into(), json!(self.sync_mode));
        if let Some(urls) = &self.image_urls {
            body.insert("image_urls".into(), json!(urls));
        }
        if let Some(acceleration) = self.acceleration {
            body.insert("acceleration".into(), json!(acceleration.as_str()));
        }
        if let Some(steps) = self.num_inference_steps {
            body.insert("num_inference_steps".into(), json!(steps));
        }
        Value::Object(body)
    }
}

/// fluxgate's billing rule, independent of any model: each image rounds up to whole megapixels (at least one), and each edit source adds one.
pub fn megapixels_billed(size: ImageSize, num_images: u32, edit_sources: usize) -> u64 {
    size.megapixels() * u64::from(num_images) + edit_sources as u64
}
