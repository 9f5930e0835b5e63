//! Ladder profiles: operator-editable TOML files in `pipelines/`, one per
//! profile, named by file stem.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::MediaError;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LadderProfile {
    /// Copy the source H.264 as the top rung instead of encoding it.
    #[serde(default = "default_true")]
    pub passthrough: bool,
    /// When the source keyframe interval is too long for the segment target,
    /// replace the passthrough rung by an encode of the source (costs CPU).
    #[serde(default = "default_true")]
    pub long_gop_fallback: bool,
    #[serde(default)]
    pub audio: AudioMode,
    /// AAC bitrate used when the source audio is not AAC and has to be
    /// encoded (once, shared by every video rendition). AAC is always copied.
    #[serde(default = "default_audio_bitrate_kbps")]
    pub audio_bitrate_kbps: u32,
    #[serde(default)]
    pub encoder: EncoderSettings,
    #[serde(default)]
    pub scaler: ScalerSettings,
    /// Encoded rungs; any order, those above the source height are skipped.
    #[serde(default, rename = "rung")]
    pub rungs: Vec<RungProfile>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioMode {
    /// One audio rendition: AAC copied, MP3 encoded to AAC.
    #[default]
    Copy,
    /// No audio rendition.
    Drop,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RungProfile {
    /// Defaults to "<height>p".
    pub name: Option<String>,
    pub height: u32,
    pub bitrate_kbps: u32,
}

impl RungProfile {
    pub fn rendition_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| format!("{}p", self.height))
    }
}

/// x264enc knobs, named after the element's properties.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncoderSettings {
    pub speed_preset: String,
    pub tune: String,
    /// "high", "main" or "baseline".
    pub profile: String,
    /// Safety net only: keyframes follow the source IDRs (or the segment
    /// target in long-GOP mode), x264 inserts its own only after this many frames.
    pub key_int_max: u32,
    pub threads: u32,
    pub refs: u32,
    pub vbv_buffer_ms: u32,
    /// Extra x264 options ("key=value:key=value"); profile knobs above win.
    pub option_string: String,
}

impl Default for EncoderSettings {
    fn default() -> Self {
        Self {
            speed_preset: "veryfast".into(),
            tune: "zerolatency".into(),
            profile: "high".into(),
            key_int_max: 600,
            threads: 0,
            refs: 1,
            vbv_buffer_ms: 1000,
            option_string: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScalerSettings {
    /// videoscale `method` nick: "nearest-neighbour", "bilinear", "4-tap", …
    pub method: String,
    pub threads: u32,
    /// Scale each rung from the next larger one instead of from the source.
    pub cascade: bool,
}

impl Default for ScalerSettings {
    fn default() -> Self {
        Self {
            method: "bilinear".into(),
            threads: 1,
            cascade: true,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_audio_bitrate_kbps() -> u32 {
    128
}

impl LadderProfile {
    /// Parses and validates a profile given as TOML text (an app's custom
    /// ladder); the error is a message for whoever sent the text.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let profile: Self = toml::from_str(text).map_err(|e| format!("ladder is not valid: {}", e.message()))?;
        profile.validate()?;
        Ok(profile)
    }

    /// Checks what serde cannot; element property values (preset names, …)
    /// are checked against GStreamer when a ladder is built.
    pub fn validate(&self) -> Result<(), String> {
        if super::codec::x264_profile_bytes(&self.encoder.profile).is_none() {
            return Err(format!(
                "encoder.profile {:?} is not one of high, main, baseline",
                self.encoder.profile
            ));
        }
        if !(8..=512).contains(&self.audio_bitrate_kbps) {
            return Err(format!(
                "audio_bitrate_kbps {} out of range 8..=512",
                self.audio_bitrate_kbps
            ));
        }
        if !self.passthrough && self.rungs.is_empty() {
            return Err("no rungs and passthrough disabled: nothing to output".into());
        }
        let mut names = BTreeSet::new();
        for rung in &self.rungs {
            if rung.height < 16 || rung.height > 4320 || rung.height % 2 != 0 {
                return Err(format!("rung height {} must be even and 16..=4320", rung.height));
            }
            if rung.bitrate_kbps == 0 || rung.bitrate_kbps > 100_000 {
                return Err(format!(
                    "rung {}p bitrate_kbps {} out of range",
                    rung.height, rung.bitrate_kbps
                ));
            }
            let name = rung.rendition_name();
            if name == "audio" || !names.insert(name.clone()) {
                return Err(format!("rung name {name:?} is used twice or reserved"));
            }
        }
        Ok(())
    }
}

pub fn load_profile(path: &Path) -> Result<LadderProfile, MediaError> {
    let text = std::fs::read_to_string(path).map_err(|source| MediaError::ProfileRead {
        path: path.to_path_buf(),
        source,
    })?;
    let profile: LadderProfile = toml::from_str(&text).map_err(|source| MediaError::ProfileParse {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    profile.validate().map_err(|reason| MediaError::ProfileInvalid {
        path: path.to_path_buf(),
        reason,
    })?;
    Ok(profile)
}

/// Loads every `*.toml` in `dir`; the file stem is the profile name.
pub fn load_profiles(dir: &Path) -> Result<BTreeMap<String, LadderProfile>, MediaError> {
    let entries = std::fs::read_dir(dir).map_err(|source| MediaError::ProfileRead {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| MediaError::ProfileRead {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) == Some("toml") {
            paths.push(path);
        }
    }
    let mut profiles = BTreeMap::new();
    for path in paths {
        let Some(name) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
            continue;
        };
        profiles.insert(name, load_profile(&path)?);
    }
    Ok(profiles)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipelines_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines")
    }

    #[test]
    fn shipped_profiles_load() {
        let profiles = load_profiles(&pipelines_dir()).expect("shipped profiles are valid");
        let default = profiles.get("default").expect("default.toml");
        let heights: Vec<u32> = default.rungs.iter().map(|r| r.height).collect();
        assert_eq!(heights, vec![1080, 720, 480, 360]);
        assert!(default.passthrough);
        assert_eq!(default.encoder.tune, "zerolatency");
        assert_eq!(default.audio_bitrate_kbps, 128, "default when the file does not say");
        let passthrough = profiles.get("passthrough").expect("passthrough.toml");
        assert!(passthrough.rungs.is_empty() && passthrough.passthrough);
        assert!(profiles.get("small").is_some_and(|p| p.rungs.len() >= 2));
    }

    #[test]
    fn bad_profile_names_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("broken.toml");
        std::fs::write(&path, "passthrough = true\n[[rung]]\nheight = \"tall\"\n").expect("write");
        let err = load_profiles(dir.path()).expect_err("must fail").to_string();
        assert!(err.contains("broken.toml"), "{err}");
        assert!(err.contains("line 3"), "{err}");

        std::fs::write(&path, "passthrough = false\n").expect("write");
        let err = load_profiles(dir.path()).expect_err("must fail").to_string();
        assert!(err.contains("nothing to output"), "{err}");

        std::fs::write(&path, "audio_bitrate_kbps = 4\n").expect("write");
        let err = load_profiles(dir.path()).expect_err("must fail").to_string();
        assert!(err.contains("audio_bitrate_kbps 4"), "{err}");

        std::fs::write(&path, "audio_bitrate_kbps = 96\n").expect("write");
        let profiles = load_profiles(dir.path()).expect("valid");
        assert_eq!(profiles.get("broken").map(|p| p.audio_bitrate_kbps), Some(96));
    }
}
