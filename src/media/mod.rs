//! The media stage: one in-process GStreamer pipeline per stream that decodes
//! the source once and produces a keyframe-aligned CMAF ladder (plus a
//! passthrough copy of the source and the audio as AAC: copied when the
//! source is AAC, encoded once from MP3 otherwise).

mod clock;
mod codec;
mod encoder_delay;
mod fallback;
#[doc(hidden)]
pub mod fuzz;
mod keys;
mod ladder;
mod output;
mod overload;
pub(crate) mod pipeline;
mod profile;
mod skip;
mod stats;
mod types;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::OnceLock;

pub use codec::{parse_asc, parse_avcc, AacInfo, AvcInfo};
pub use ladder::{spawn_ladder, LadderHandle, LadderSettings};
pub use overload::{OverloadSettings, OverloadState};
pub use profile::{
    load_profile, load_profiles, AudioMode, EncoderSettings, LadderProfile, RungProfile, ScalerSettings,
};
pub use stats::LadderStats;
pub use types::*;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("GStreamer initialisation failed: {0}")]
    GstInit(String),
    #[error("GStreamer element `{element}` is missing (install {package})")]
    MissingElement {
        element: &'static str,
        package: &'static str,
    },
    #[error("reading ladder profile {path}: {source}")]
    ProfileRead { path: PathBuf, source: std::io::Error },
    #[error("parsing ladder profile {path}: {source}")]
    ProfileParse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("ladder profile {path}: {reason}")]
    ProfileInvalid { path: PathBuf, reason: String },
}

/// Elements every ladder may use, with the Debian package that ships them.
const REQUIRED_ELEMENTS: [(&str, &str); 17] = [
    ("appsrc", "gstreamer1.0-plugins-base"),
    ("appsink", "gstreamer1.0-plugins-base"),
    ("videoconvert", "gstreamer1.0-plugins-base"),
    ("videoscale", "gstreamer1.0-plugins-base"),
    ("tee", "libgstreamer1.0-0"),
    ("queue", "libgstreamer1.0-0"),
    ("capsfilter", "libgstreamer1.0-0"),
    ("aacparse", "gstreamer1.0-plugins-good"),
    ("h264parse", "gstreamer1.0-plugins-bad"),
    ("avdec_h264", "gstreamer1.0-libav"),
    ("x264enc", "gstreamer1.0-plugins-ugly"),
    ("cmafmux", "the gst-plugin-fmp4 crate (registered statically)"),
    // MP3 sources are transcoded to AAC.
    ("mpegaudioparse", "gstreamer1.0-plugins-good"),
    ("avdec_mp3", "gstreamer1.0-libav"),
    ("audioconvert", "gstreamer1.0-plugins-base"),
    ("audioresample", "gstreamer1.0-plugins-base"),
    ("avenc_aac", "gstreamer1.0-libav"),
];

/// For the readiness probe: GStreamer initialised and every element a
/// ladder needs still in its registry (a plugin can vanish under a running
/// server when packages are removed).
pub fn readiness() -> Result<(), String> {
    init().map_err(|e| e.to_string())?;
    for (element, package) in REQUIRED_ELEMENTS {
        if gstreamer::ElementFactory::find(element).is_none() {
            return Err(format!("GStreamer element {element} is missing (install {package})"));
        }
    }
    Ok(())
}

/// Initialises GStreamer, registers `cmafmux`, and checks that every element
/// a ladder needs is installed. Safe to call any number of times.
pub fn init() -> Result<(), MediaError> {
    static RESULT: OnceLock<Result<(), (Option<usize>, String)>> = OnceLock::new();
    let result = RESULT.get_or_init(|| {
        gstreamer::init().map_err(|e| (None, e.to_string()))?;
        gstfmp4::plugin_register_static().map_err(|e| (None, e.to_string()))?;
        for (index, (element, _)) in REQUIRED_ELEMENTS.iter().enumerate() {
            if gstreamer::ElementFactory::find(element).is_none() {
                return Err((Some(index), String::new()));
            }
        }
        Ok(())
    });
    match result {
        Ok(()) => Ok(()),
        Err((Some(index), _)) => {
            let (element, package) = REQUIRED_ELEMENTS.get(*index).copied().unwrap_or(("?", "?"));
            Err(MediaError::MissingElement { element, package })
        }
        Err((None, message)) => Err(MediaError::GstInit(message.clone())),
    }
}
