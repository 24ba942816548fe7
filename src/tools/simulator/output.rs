//! The model output fal returns for a finished request (`images[]`, `seed`, `has_nsfw_concepts`, `timings`, `prompt`): image URLs served by the
//! simulator (or inline data URIs in `sync_mode`), seed, NSFW flags, prompt and timings.
use serde_json::{json, Value};

use super::images::{self, ImageSpec};
use super::queue::{JobSpec, Outcome};

/// What the output depends on besides the request itself.
pub(crate) struct OutputContext<'a> {
    pub base_url: &'a str,
    pub nsfw_trigger: &'a str,
    pub inference_time: f64,
}

/// Path of one output image under the simulator's base URL.
pub(crate) fn file_path(spec: &JobSpec, index: u32) -> String {
    let ext = spec.input.output_format.extension();
    format!("/files/{}/{index}.{ext}", spec.id)
}

/// The safety checker "fires" when the prompt holds the trigger word and the checker is on.
pub(crate) fn is_nsfw(spec: &JobSpec, trigger: &str) -> bool {
    spec.input.enable_safety_checker
        && !trigger.is_empty()
        && spec
            .input
            .prompt
            .to_lowercase()
            .contains(&trigger.to_lowercase())
}

pub(crate) fn image_spec(spec: &JobSpec, index: u32, nsfw: bool) -> ImageSpec<'_> {
    ImageSpec {
        prompt: &spec.input.prompt,
        seed: spec.seed,
        index,
        size: spec.input.image_size,
        format: spec.input.output_format,
        black: nsfw,
    }
}

/// Builds the outcome of a run. CPU-heavy in `sync_mode` (it encodes every image): call it from
/// a blocking thread.
pub(crate) fn build(spec: &JobSpec, ctx: &OutputContext<'_>) -> Outcome {
    if spec.faults.fail {
        return simulated_failure(ctx.inference_time);
    }
    let nsfw = is_nsfw(spec, ctx.nsfw_trigger);
    let format = spec.input.output_format;
    let size = spec.input.image_size;
    let mut list = Vec::with_capacity(spec.input.num_images as usize);
    for index in 0..spec.input.num_images {
        let file_name = format!("{}-{index}.{}", spec.id, format.extension());
        let mut image = json!({
            "width": size.width,
            "height": size.height,
            "content_type": format.content_type(),
            "file_name": file_name,
        });
        if spec.input.sync_mode {
            let bytes = match images::render(&image_spec(spec, index, nsfw)) {
                Ok(bytes) => bytes,
                Err(error) => return render_failure(&error.to_string(), ctx.inference_time),
            };
            image["url"] = json!(images::data_uri(format, &bytes));
            image["file_size"] = json!(bytes.len());
        } else {
            image["url"] = json!(format!("{}{}", ctx.base_url, file_path(spec, index)));
        }
        list.push(image);
    }
    let flags = vec![nsfw; list.len()];
    let output = json!({
        "images": list,
        "timings": {"inference": ctx.inference_time},
        "seed": spec.seed,
        "has_nsfw_concepts": flags,
        "prompt": spec.input.prompt,
    });
    Outcome::Success {
        output,
        inference_time: ctx.inference_time,
    }
}

/// `[sim:fail]`: the run ends in a 422, as a model that produced nothing does.
fn simulated_failure(inference_time: f64) -> Outcome {
    let body = json!({"detail": [{
        "loc": ["body"],
        "msg": "The model did not produce an image (simulated failure).",
        "type": "no_media_generated",
    }]});
    Outcome::Failure {
        status: 422,
        body,
        error: "Invalid status code: 422".into(),
        error_type: "no_media_generated".into(),
        inference_time,
    }
}

fn render_failure(reason: &str, inference_time: f64) -> Outcome {
    Outcome::Failure {
        status: 500,
        body: json!({"detail": format!("Internal error: {reason}"), "error_type": "internal_server_error"}),
        error: "Invalid status code: 500".into(),
        error_type: "internal_server_error".into(),
        inference_time,
    }
}

/// A JSON value for `output` or `body` that a response can return.
pub(crate) fn response_of(outcome: &Outcome) -> (u16, &Value) {
    match outcome {
        Outcome::Success { output, .. } => (200, output),
        Outcome::Failure { status, body, .. } => (*status, body),
    }
}
