//! Unit tests: every validation rule names its field; prices match fal's published examples (512² and 1024² → $0.008, 1920×1080 → $0.016).
use serde_json::{json, Value};

use super::*;

fn turbo() -> &'static Model {
    Model::lookup("fal-ai/flux-2/turbo").unwrap()
}

fn turbo_edit() -> &'static Model {
    Model::lookup("fal-ai/flux-2/turbo/edit").unwrap()
}

fn dev() -> &'static Model {
    Model::lookup("fal-ai/flux-2").unwrap()
}

/// The errors for `body` on `model`, as `(field, kind)` pairs.
fn errors(model: &Model, body: Value) -> Vec<(String, &'static str)> {
    validate(model, &body)
        .expect_err("expected a validation error")
        .into_iter()
        .map(|e| (e.field, e.kind))
        .collect()
}

fn single_error(model: &Model, body: Value) -> (String, &'static str) {
    let errs = errors(model, body);
    assert_eq!(errs.len(), 1, "{errs:?}");
    errs.into_iter().next().unwrap()
}

fn with(field: &str, value: Value) -> Value {
    let mut body = json!({"prompt": "a fox"});
    body[field] = value;
    body
}

#[test]
fn the_catalogue_knows_six_models_and_their_prices() {
    assert_eq!(MODELS.len(), 6);
    assert_eq!(turbo().price_per_mp_micro_usd, 8_000);
    assert_eq!(
        Model::lookup("fal-ai/flux-2/flash")
            .unwrap()
            .price_per_mp_micro_usd,
        5_000
    );
    assert_eq!(dev().price_per_mp_micro_usd, 12_000);
    assert!(turbo_edit().is_edit && !turbo().is_edit);
    assert_eq!(dev().schema, SchemaKind::Dev);
    assert!(Model::lookup("fal-ai/flux-2-pro").is_none());
    assert_eq!(turbo_edit().queue_app(), "fal-ai/flux-2");
    assert_eq!(dev().queue_app(), "fal-ai/flux-2");
}

#[test]
fn defaults_are_filled_in() {
    let n = validate(turbo(), &json!({"prompt": "a fox"})).unwrap();
    assert_eq!(
        n.image_size,
        ImageSize {
            width: 1024,
            height: 768
        }
    );
    assert_eq!(n.image_size_preset, Some(ImagePreset::Landscape4_3));
    assert_eq!(n.guidance_scale, 2.5);
    assert_eq!(n.num_images, 1);
    assert_eq!(n.seed, None);
    assert_eq!(n.output_format, OutputFormat::Png);
    assert!(n.enable_safety_checker && !n.enable_prompt_expansion && !n.sync_mode);
    assert_eq!(
        (n.image_urls, n.acceleration, n.num_inference_steps),
        (None, None, None)
    );

    let e = validate(
        turbo_edit(),
        &json!({"prompt": "x", "image_urls": ["https://a/b.png"]}),
    )
    .unwrap();
    assert_eq!(e.image_size_preset, Some(ImagePreset::SquareHd));
    let d = validate(dev(), &json!({"prompt": "x"})).unwrap();
    assert_eq!(
        (d.acceleration, d.num_inference_steps),
        (Some(Acceleration::Regular), Some(28))
    );
}

#[test]
fn presets_resolve_to_their_pixels() {
    let expect = [
        ("square_hd", 1024, 1024),
        ("square", 512, 512),
        ("portrait_4_3", 768, 1024),
        ("portrait_16_9", 576, 1024),
        ("landscape_4_3", 1024, 768),
        ("landscape_16_9", 1024, 576),
    ];
    for (name, width, height) in expect {
        let n = validate(turbo(), &with("image_size", json!(name))).unwrap();
        assert_eq!(n.image_size, ImageSize { width, height }, "{name}");
        assert_eq!(n.image_size_preset.map(ImagePreset::as_str), Some(name));
    }
}

#[test]
fn the_body_must_be_an_object() {
    assert_eq!(
        single_error(turbo(), json!([1])),
        ("body".into(), "dict_type")
    );
}

#[test]
fn prompt_is_required_and_non_empty() {
    assert_eq!(
        single_error(turbo(), json!({})),
        ("prompt".into(), "missing")
    );
    assert_eq!(
        single_error(turbo(), json!({"prompt": "  "})),
        ("prompt".into(), "string_too_short")
    );
    assert_eq!(
        single_error(turbo(), json!({"prompt": 3})),
        ("prompt".into(), "string_type")
    );
}

#[test]
fn custom_sizes_are_bounded_integers() {
    let size = |v: Value| single_error(turbo(), with("image_size", v));
    assert_eq!(
        size(json!({"width": 511, "height": 512})),
        ("image_size.width".into(), "greater_than_equal")
    );
    assert_eq!(
        size(json!({"width": 512, "height": 2049})),
        ("image_size.height".into(), "less_than_equal")
    );
    assert_eq!(
        size(json!({"width": 600.5, "height": 512})),
        ("image_size.width".into(), "int_type")
    );
    assert_eq!(
        size(json!({"width": 600})),
        ("image_size.height".into(), "missing")
    );
    assert_eq!(
        size(json!({"width": 600, "height": 600, "d": 1})),
        ("image_size.d".into(), "extra_forbidden")
    );
    assert_eq!(size(json!("huge")), ("image_size".into(), "enum"));
    assert_eq!(size(json!(7)), ("image_size".into(), "union_type"));
    let n = validate(
        turbo(),
        &with("image_size", json!({"width": 1920, "height": 1080})),
    )
    .unwrap();
    assert_eq!(
        (n.image_size, n.image_size_preset),
        (
            ImageSize {
                width: 1920,
                height: 1080
            },
            None
        )
    );
}

#[test]
fn guidance_scale_is_a_number_from_0_to_20() {
    let g = |v: Value| single_error(turbo(), with("guidance_scale", v));
    assert_eq!(
        g(json!(-0.1)),
        ("guidance_scale".into(), "greater_than_equal")
    );
    assert_eq!(g(json!(20.5)), ("guidance_scale".into(), "less_than_equal"));
    assert_eq!(g(json!("3")), ("guidance_scale".into(), "float_type"));
    assert_eq!(
        validate(turbo(), &with("guidance_scale", json!(20)))
            .unwrap()
            .guidance_scale,
        20.0
    );
}

#[test]
fn num_images_is_an_integer_from_1_to_4() {
    let n = |v: Value| single_error(turbo(), with("num_images", v));
    assert_eq!(n(json!(0)), ("num_images".into(), "greater_than_equal"));
    assert_eq!(n(json!(5)), ("num_images".into(), "less_than_equal"));
    assert_eq!(n(json!(2.0)), ("num_images".into(), "int_type"));
    assert_eq!(n(json!(-1)), ("num_images".into(), "greater_than_equal"));
}

#[test]
fn seed_is_a_non_negative_64_bit_integer() {
    let s = |v: Value| single_error(turbo(), with("seed", v));
    assert_eq!(s(json!(1.5)), ("seed".into(), "int_type"));
    assert_eq!(s(json!(-3)), ("seed".into(), "greater_than_equal"));
    assert_eq!(s(json!(u64::MAX)), ("seed".into(), "less_than_equal"));
    assert_eq!(s(json!("42")), ("seed".into(), "int_type"));
    let big = i64::MAX as u64;
    assert_eq!(
        validate(turbo(), &with("seed", json!(big))).unwrap().seed,
        Some(big)
    );
    let fal_like = 212_345_678_901_234_567_u64;
    assert_eq!(
        validate(turbo(), &with("seed", json!(fal_like)))
            .unwrap()
            .seed,
        Some(fal_like)
    );
}

#[test]
fn enums_and_booleans_are_checked() {
    assert_eq!(
        single_error(turbo(), with("output_format", json!("gif"))),
        ("output_format".into(), "enum")
    );
    for name in [
        "enable_safety_checker",
        "enable_prompt_expansion",
        "sync_mode",
    ] {
        assert_eq!(
            single_error(turbo(), with(name, json!("yes"))),
            (name.into(), "bool_type")
        );
    }
    let n = validate(turbo(), &with("output_format", json!("webp"))).unwrap();
    assert_eq!(n.output_format, OutputFormat::Webp);
}

#[test]
fn edit_models_need_one_to_four_image_urls() {
    let e = |v: Value| errors(turbo_edit(), with("image_urls", v));
    assert_eq!(
        errors(turbo_edit(), json!({"prompt": "x"})),
        [("image_urls".into(), "missing")]
    );
    assert_eq!(e(json!([])), [("image_urls".into(), "too_short")]);
    assert_eq!(
        e(json!("https://a/b.png")),
        [("image_urls".into(), "list_type")]
    );
    let five = json!([
        "https://a/1",
        "https://a/2",
        "https://a/3",
        "https://a/4",
        "https://a/5"
    ]);
    assert_eq!(e(five), [("image_urls".into(), "too_long")]);
    let bad = json!(["https://a/1", "ftp://a/2", 3, "data:image/png;base64,"]);
    assert_eq!(
        e(bad),
        [
            ("image_urls[1]".into(), "url_parsing"),
            ("image_urls[2]".into(), "string_type"),
            ("image_urls[3]".into(), "url_parsing"),
        ]
    );
    let err = validate(turbo_edit(), &with("image_urls", json!([1]))).unwrap_err();
    assert_eq!(err[0].loc, ["body", "image_urls", "0"]);
    let ok = json!(["http://x.test/a.jpg", "data:image/png;base64,iVBORw0KGgo="]);
    assert_eq!(
        validate(turbo_edit(), &with("image_urls", ok))
            .unwrap()
            .image_urls
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn dev_fields_are_checked_on_dev_and_forbidden_elsewhere() {
    assert_eq!(
        single_error(dev(), with("acceleration", json!("max"))),
        ("acceleration".into(), "enum")
    );
    assert_eq!(
        single_error(dev(), with("num_inference_steps", json!(3))),
        ("num_inference_steps".into(), "greater_than_equal")
    );
    assert_eq!(
        single_error(dev(), with("num_inference_steps", json!(51))),
        ("num_inference_steps".into(), "less_than_equal")
    );
    let n = validate(
        dev(),
        &json!({"prompt": "x", "acceleration": "high", "num_inference_steps": 4}),
    )
    .unwrap();
    assert_eq!(
        (n.acceleration, n.num_inference_steps),
        (Some(Acceleration::High), Some(4))
    );
    assert_eq!(
        single_error(turbo(), with("acceleration", json!("high"))),
        ("acceleration".into(), "extra_forbidden")
    );
    assert_eq!(
        single_error(turbo(), with("image_urls", json!(["https://a/b"]))),
        ("image_urls".into(), "extra_forbidden")
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let body =
        json!({"prompt": "", "num_images": 9, "seed": -1, "colour": "red", "image_size": "big"});
    let errs = validate(turbo(), &body).unwrap_err();
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["prompt", "image_size", "num_images", "seed", "colour"]
    );
    let extra = errs.iter().find(|e| e.field == "colour").unwrap();
    assert_eq!(
        (extra.loc.clone(), extra.kind),
        (
            vec!["body".to_string(), "colour".to_string()],
            "extra_forbidden"
        )
    );
}

#[test]
fn the_fal_body_round_trips_through_validation() {
    let inputs = [
        (
            turbo(),
            json!({"prompt": "a", "image_size": "square", "seed": 7, "output_format": "jpeg"}),
        ),
        (
            turbo(),
            json!({"prompt": "b", "image_size": {"width": 1920, "height": 1080}, "num_images": 3}),
        ),
        (
            turbo_edit(),
            json!({"prompt": "c", "image_urls": ["https://a/b.png"], "sync_mode": true}),
        ),
        (
            dev(),
            json!({"prompt": "d", "acceleration": "none", "guidance_scale": 4.5}),
        ),
    ];
    for (model, body) in inputs {
        let n = validate(model, &body).unwrap();
        let fal = n.to_fal_json();
        assert_eq!(validate(model, &fal).unwrap(), n, "{fal}");
    }
    let n = validate(turbo(), &json!({"prompt": "a"})).unwrap();
    assert_eq!(n.to_fal_json()["image_size"], json!("landscape_4_3"));
    assert!(n.to_fal_json().get("seed").is_none());
    let view = serde_json::to_value(&n).unwrap();
    assert_eq!(view["image_size"], json!({"width": 1024, "height": 768}));
    assert_eq!(view["image_size_preset"], json!("landscape_4_3"));
}

#[test]
fn prices_follow_the_megapixel_rule() {
    let price =
        |model: &Model, body: Value| model.price_micro_usd(&validate(model, &body).unwrap());
    let size = |w: u32, h: u32| json!({"prompt": "x", "image_size": {"width": w, "height": h}});
    assert_eq!(price(turbo(), size(512, 512)), 8_000);
    assert_eq!(price(turbo(), size(1024, 1024)), 8_000);
    assert_eq!(price(turbo(), size(1920, 1080)), 16_000);
    let mut four = size(1448, 1448);
    four["num_images"] = json!(4);
    assert_eq!(price(turbo(), four), 64_000);
    let edit = json!({"prompt": "x", "image_size": "square_hd", "image_urls": ["https://a/b.png"]});
    assert_eq!(price(turbo_edit(), edit), 16_000);
    assert_eq!(price(dev(), size(1024, 1024)), 12_000);
    assert_eq!(
        megapixels_billed(
            ImageSize {
                width: 1025,
                height: 1024
            },
            1,
            0
        ),
        2
    );
}
