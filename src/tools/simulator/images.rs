//! "Generated" images: real PNG/JPEG/WebP files of the requested size whose pixels come from a
//! SHA-256 of (prompt, seed, index, size, format), so the same input always yields the same bytes
//! (a cache hit can be checked byte for byte) and another seed yields other bytes.
use base64::Engine as _;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::codecs::webp::WebPEncoder;
use image::{ExtendedColorType, ImageEncoder};
use sha2::{Digest, Sha256};

use crate::fal::models::{ImageSize, OutputFormat};

/// Everything that determines one output image.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ImageSpec<'a> {
    pub prompt: &'a str,
    pub seed: u64,
    pub index: u32,
    pub size: ImageSize,
    pub format: OutputFormat,
    /// The safety checker fired: a solid black image, as fal returns.
    pub black: bool,
}

/// Encodes the image described by `spec`.
pub(crate) fn render(spec: &ImageSpec<'_>) -> Result<Vec<u8>, image::ImageError> {
    let ImageSize { width, height } = spec.size;
    let pixels = if spec.black {
        vec![0u8; width as usize * height as usize * 3]
    } else {
        pattern(spec)
    };
    let mut out = Vec::with_capacity(pixels.len() / 4);
    match spec.format {
        // Fast compression: the simulator's images are test fixtures, not art.
        OutputFormat::Png => {
            PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Sub)
                .write_image(&pixels, width, height, ExtendedColorType::Rgb8)?
        }
        OutputFormat::Jpeg => JpegEncoder::new_with_quality(&mut out, 85).write_image(
            &pixels,
            width,
            height,
            ExtendedColorType::Rgb8,
        )?,
        OutputFormat::Webp => WebPEncoder::new_lossless(&mut out).write_image(
            &pixels,
            width,
            height,
            ExtendedColorType::Rgb8,
        )?,
    }
    Ok(out)
}

/// `data:image/…;base64,…` for `sync_mode` outputs.
pub(crate) fn data_uri(format: OutputFormat, bytes: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    format!("data:{};base64,{encoded}", format.content_type())
}

/// A diagonal two-colour gradient under a checkerboard tint, all chosen by the digest.
fn pattern(spec: &ImageSpec<'_>) -> Vec<u8> {
    let d = digest(spec);
    let (c1, c2, c3) = ([d[0], d[1], d[2]], [d[3], d[4], d[5]], [d[6], d[7], d[8]]);
    let cell = 16 + u32::from(d[9]) % 112;
    let ImageSize { width, height } = spec.size;
    let span = (width + height).saturating_sub(2).max(1);
    let mut pixels = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height {
        for x in 0..width {
            let t = (x + y) * 256 / (span + 1);
            let checker = ((x / cell) + (y / cell)) % 2 == 0;
            for ch in 0..3 {
                let base = (u32::from(c1[ch]) * (256 - t) + u32::from(c2[ch]) * t) >> 8;
                let value = if checker {
                    (base * 3 + u32::from(c3[ch])) >> 2
                } else {
                    base
                };
                pixels.push(value as u8);
            }
        }
    }
    pixels
}

fn digest(spec: &ImageSpec<'_>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((spec.prompt.len() as u64).to_le_bytes());
    h.update(spec.prompt.as_bytes());
    h.update(spec.seed.to_le_bytes());
    h.update(spec.index.to_le_bytes());
    h.update(spec.size.width.to_le_bytes());
    h.update(spec.size.height.to_le_bytes());
    h.update(spec.format.as_str().as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(seed: u64, format: OutputFormat) -> ImageSpec<'static> {
        let size = ImageSize {
            width: 520,
            height: 600,
        };
        ImageSpec {
            prompt: "a red fox",
            seed,
            index: 0,
            size,
            format,
            black: false,
        }
    }

    #[test]
    fn images_are_real_deterministic_and_seed_dependent() {
        for format in OutputFormat::ALL {
            let a = render(&spec(1, format)).unwrap();
            assert_eq!(a, render(&spec(1, format)).unwrap());
            assert_ne!(a, render(&spec(2, format)).unwrap());
            let decoded = image::load_from_memory(&a).unwrap();
            assert_eq!((decoded.width(), decoded.height()), (520, 600));
            let expected = match format {
                OutputFormat::Jpeg => image::ImageFormat::Jpeg,
                OutputFormat::Png => image::ImageFormat::Png,
                OutputFormat::Webp => image::ImageFormat::WebP,
            };
            assert_eq!(image::guess_format(&a).unwrap(), expected);
        }
        let black = render(&ImageSpec {
            black: true,
            ..spec(1, OutputFormat::Png)
        })
        .unwrap();
        let img = image::load_from_memory(&black).unwrap().to_rgb8();
        assert!(img.pixels().all(|p| p.0 == [0, 0, 0]));
        assert!(data_uri(OutputFormat::Webp, b"x").starts_with("data:image/webp;base64,"));
    }
}
