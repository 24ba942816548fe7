//! Exact validation of a FLUX.2 input body: every rule of fal's FLUX.2 schemas, unknown fields rejected,
//! and every error collected (not just the first) with a stable `kind` callers can branch on.
use serde::Serialize;
use serde_json::{Map, Value};

use super::{
    Acceleration, ImagePreset, ImageSize, Model, NormalizedInput, OutputFormat, SchemaKind,
};

/// One rejected field, in the vocabulary of fal's 422 `detail` items (pydantic's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// fal's location path: `["body", "image_size", "width"]`; list indices as decimal strings.
    pub loc: Vec<String>,
    /// Human field path: `image_size.width`, `image_urls[2]`; `body` for the body itself.
    pub field: String,
    pub msg: String,
    /// Stable machine type: `missing`, `less_than_equal`, `extra_forbidden`, …
    pub kind: &'static str,
}

const GUIDANCE_MAX: f64 = 20.0;
const MAX_EDIT_IMAGES: usize = 4;

/// Validates `body` against `model`'s schema; on success every default is filled in.
pub fn validate(model: &Model, body: &Value) -> Result<NormalizedInput, Vec<FieldError>> {
    let Some(obj) = body.as_object() else {
        return Err(vec![FieldError {
            loc: vec!["body".into()],
            field: "body".into(),
            msg: "Input should be a valid dictionary or object".into(),
            kind: "dict_type",
        }]);
    };
    let mut v = Validator {
        obj,
        errors: Vec::new(),
    };
    let dev = model.schema == SchemaKind::Dev;

    let prompt = v.prompt();
    let (image_size, image_size_preset) = v.image_size(model.default_image_size());
    let guidance_scale = v.number("guidance_scale", 0.0, GUIDANCE_MAX).unwrap_or(2.5);
    let num_images = v.int("num_images", 1, 4).unwrap_or(1) as u32;
    let seed = v.int("seed", 0, i64::MAX as u64);
    let output_format = v
        .choice(
            "output_format",
            OutputFormat::parse,
            &OutputFormat::ALL.map(OutputFormat::as_str),
        )
        .unwrap_or_default();
    let enable_safety_checker = v.bool("enable_safety_checker").unwrap_or(true);
    let enable_prompt_expansion = v.bool("enable_prompt_expansion").unwrap_or(false);
    let sync_mode = v.bool("sync_mode").unwrap_or(false);
    let image_urls = model.is_edit.then(|| v.image_urls());
    let (acceleration, num_inference_steps) = if dev {
        let names = Acceleration::ALL.map(Acceleration::as_str);
        let acceleration = v.choice("acceleration", Acceleration::parse, &names);
        let steps = v.int("num_inference_steps", 4, 50).unwrap_or(28) as u32;
        (Some(acceleration.unwrap_or_default()), Some(steps))
    } else {
        (None, None)
    };
    v.unknown_fields(model);

    if !v.errors.is_empty() {
        return Err(v.errors);
    }
    Ok(NormalizedInput {
        prompt: prompt.unwrap_or_default(),
        image_size,
        image_size_preset,
        guidance_scale,
        num_images,
        seed,
        output_format,
        enable_safety_checker,
        enable_prompt_expansion,
        sync_mode,
        image_urls: image_urls.map(Option::unwrap_or_default),
        acceleration,
        num_inference_steps,
    })
}

/// Fields each schema knows; anything else is `extra_forbidden`.
pub fn known_fields(model: &Model) -> impl Iterator<Item = &'static str> {
    const COMMON: [&str; 9] = [
        "prompt",
        "image_size",
        "guidance_scale",
        "num_images",
        "seed",
        "output_format",
        "enable_safety_checker",
        "enable_prompt_expansion",
        "sync_mode",
    ];
    let edit: &[&str] = if model.is_edit { &["image_urls"] } else { &[] };
    let dev: &[&str] = match model.schema {
        SchemaKind::Dev => &["acceleration", "num_inference_steps"],
        SchemaKind::Fast => &[],
    };
    COMMON
        .into_iter()
        .chain(edit.iter().copied())
        .chain(dev.iter().copied())
}

struct Validator<'a> {
    obj: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl Validator<'_> {
    /// Records an error at `body.<path…>`; `field` is the dotted/bracketed human form.
    fn fail(&mut self, path: &[&str], field: String, kind: &'static str, msg: impl Into<String>) {
        let loc = std::iter::once("body")
            .chain(path.iter().copied())
            .map(String::from)
            .collect();
        self.errors.push(FieldError {
            loc,
            field,
            msg: msg.into(),
            kind,
        });
    }

    fn fail_top(&mut self, name: &str, kind: &'static str, msg: impl Into<String>) {
        self.fail(&[name], name.to_string(), kind, msg);
    }

    fn prompt(&mut self) -> Option<String> {
        match self.obj.get("prompt") {
            None | Some(Value::Null) => self.fail_top("prompt", "missing", "Field required"),
            Some(Value::String(s)) if s.trim().is_empty() => self.fail_top(
                "prompt",
                "string_too_short",
                "String should have at least 1 character",
            ),
            Some(Value::String(s)) => return Some(s.clone()),
            Some(_) => self.fail_top("prompt", "string_type", "Input should be a valid string"),
        }
        None
    }

    fn image_size(&mut self, default: ImagePreset) -> (ImageSize, Option<ImagePreset>) {
        let fallback = (default.size(), Some(default));
        let value = match self.obj.get("image_size") {
            None | Some(Value::Null) => return fallback,
            Some(value) => value,
        };
        match value {
            Value::String(name) => match ImagePreset::parse(name) {
                Some(preset) => (preset.size(), Some(preset)),
                None => {
                    let names = ImagePreset::ALL.map(ImagePreset::as_str);
                    self.fail_top("image_size", "enum", expected_one_of(&names));
                    fallback
                }
            },
            Value::Object(size) => {
                let width = self.side(size, "width");
                let height = self.side(size, "height");
                for key in size
                    .keys()
                    .filter(|k| !matches!(k.as_str(), "width" | "height"))
                {
                    let field = format!("image_size.{key}");
                    self.fail(&["image_size", key], field, "extra_forbidden", EXTRA_MSG);
                }
                match (width, height) {
                    (Some(width), Some(height)) => (ImageSize { width, height }, None),
                    _ => fallback,
                }
            }
            _ => {
                let msg = "Input should be a preset name or an object with width and height";
                self.fail_top("image_size", "union_type", msg);
                fallback
            }
        }
    }

    fn side(&mut self, size: &Map<String, Value>, name: &str) -> Option<u32> {
        let field = format!("image_size.{name}");
        let path = ["image_size", name];
        let (min, max) = (ImageSize::MIN_SIDE, ImageSize::MAX_SIDE);
        match size.get(name) {
            None | Some(Value::Null) => self.fail(&path, field, "missing", "Field required"),
            Some(value) => match check_int(value, u64::from(min), u64::from(max)) {
                Ok(n) => return Some(n as u32),
                Err((kind, msg)) => self.fail(&path, field, kind, msg),
            },
        }
        None
    }

    /// An optional integer field within `min..=max`.
    fn int(&mut self, name: &str, min: u64, max: u64) -> Option<u64> {
        let value = self.obj.get(name).filter(|v| !v.is_null())?;
        check_int(value, min, max)
            .map_err(|(kind, msg)| self.fail_top(name, kind, msg))
            .ok()
    }

    /// An optional number field (integer or float) within `min..=max`.
    fn number(&mut self, name: &str, min: f64, max: f64) -> Option<f64> {
        let value = self.obj.get(name).filter(|v| !v.is_null())?;
        let Some(n) = value.as_f64() else {
            self.fail_top(name, "float_type", "Input should be a valid number");
            return None;
        };
        if n < min {
            self.fail_top(
                name,
                "greater_than_equal",
                format!("Input should be greater than or equal to {min}"),
            );
        } else if n > max {
            self.fail_top(
                name,
                "less_than_equal",
                format!("Input should be less than or equal to {max}"),
            );
        } else {
            return Some(n);
        }
        None
    }

    fn bool(&mut self, name: &str) -> Option<bool> {
        match self.obj.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                self.fail_top(name, "bool_type", "Input should be a valid boolean");
                None
            }
        }
    }

    fn choice<T>(&mut self, name: &str, parse: fn(&str) -> Option<T>, names: &[&str]) -> Option<T> {
        let value = self.obj.get(name).filter(|v| !v.is_null())?;
        let parsed = value.as_str().and_then(parse);
        if parsed.is_none() {
            self.fail_top(name, "enum", expected_one_of(names));
        }
        parsed
    }

    fn image_urls(&mut self) -> Option<Vec<String>> {
        let items = match self.obj.get("image_urls") {
            None | Some(Value::Null) => {
                self.fail_top("image_urls", "missing", "Field required");
                return None;
            }
            Some(Value::Array(items)) => items,
            Some(_) => {
                self.fail_top("image_urls", "list_type", "Input should be a valid list");
                return None;
            }
        };
        if items.is_empty() {
            self.fail_top(
                "image_urls",
                "too_short",
                "List should have at least 1 item after validation, not 0",
            );
            return None;
        }
        if items.len() > MAX_EDIT_IMAGES {
            let msg = format!(
                "List should have at most {MAX_EDIT_IMAGES} items after validation, not {}",
                items.len()
            );
            self.fail_top("image_urls", "too_long", msg);
        }
        let mut urls = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let index = i.to_string();
            let field = format!("image_urls[{i}]");
            match item.as_str() {
                None => self.fail(
                    &["image_urls", &index],
                    field,
                    "string_type",
                    "Input should be a valid string",
                ),
                Some(url) if !is_image_url(url) => self.fail(
                    &["image_urls", &index],
                    field,
                    "url_parsing",
                    "Input should be an http(s) URL or a data:image/…;base64, URI",
                ),
                Some(url) => urls.push(url.to_string()),
            }
        }
        Some(urls)
    }

    fn unknown_fields(&mut self, model: &Model) {
        let obj = self.obj;
        for key in obj
            .keys()
            .filter(|k| !known_fields(model).any(|f| f == k.as_str()))
        {
            self.fail_top(key, "extra_forbidden", EXTRA_MSG);
        }
    }
}

const EXTRA_MSG: &str = "Extra inputs are not permitted";

/// A JSON integer (never a float, never negative) within `min..=max`.
fn check_int(value: &Value, min: u64, max: u64) -> Result<u64, (&'static str, String)> {
    let n = match value {
        Value::Number(n) if n.is_u64() => n.as_u64().unwrap_or_default(),
        // Negative integers are integers, just too small.
        Value::Number(n) if n.is_i64() => {
            return Err((
                "greater_than_equal",
                format!("Input should be greater than or equal to {min}"),
            ))
        }
        _ => return Err(("int_type", "Input should be a valid integer".into())),
    };
    if n < min {
        Err((
            "greater_than_equal",
            format!("Input should be greater than or equal to {min}"),
        ))
    } else if n > max {
        Err((
            "less_than_equal",
            format!("Input should be less than or equal to {max}"),
        ))
    } else {
        Ok(n)
    }
}

fn expected_one_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    format!("Input should be {}", quoted.join(", "))
}

/// An http(s) URL with a host, or an inline `data:image/<type>;base64,<data>` URI.
fn is_image_url(s: &str) -> bool {
    if let Some(rest) = s.strip_prefix("data:image/") {
        return match rest.split_once(";base64,") {
            Some((subtype, data)) => !subtype.is_empty() && !data.is_empty(),
            None => false,
        };
    }
    match url::Url::parse(s) {
        Ok(url) => matches!(url.scheme(), "http" | "https") && url.host().is_some(),
        Err(_) => false,
    }
}
