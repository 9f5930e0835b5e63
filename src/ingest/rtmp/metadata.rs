//! `@setDataFrame onMetaData` → `StreamMetadata`.

use super::amf0::Amf;
use crate::ingest::StreamMetadata;

/// Finds the metadata object in a data message's values, accepting both
/// `["@setDataFrame", "onMetaData", {..}]` and `["onMetaData", {..}]`.
pub(crate) fn from_data_message(values: &[Amf]) -> Option<StreamMetadata> {
    let rest = match values.first().and_then(Amf::as_str) {
        Some("@setDataFrame") => values.get(1..)?,
        _ => values,
    };
    if rest.first().and_then(Amf::as_str) != Some("onMetaData") {
        return None;
    }
    let object = rest.get(1)?;
    if !matches!(object, Amf::Object(_)) {
        return None;
    }
    let number = |name: &str| {
        object
            .property(name)
            .and_then(Amf::as_number)
            .filter(|n| n.is_finite() && *n >= 0.0)
    };
    let dimension = |name: &str| number(name).filter(|n| *n <= f64::from(u32::MAX)).map(|n| n as u32);
    // Some encoders send codec ids as strings ("avc1"), so presence is what counts.
    let present = |name: &str| {
        object
            .property(name)
            .map(|value| !matches!(value, Amf::Null | Amf::Undefined))
    };
    Some(StreamMetadata {
        width: dimension("width"),
        height: dimension("height"),
        framerate: number("framerate").or_else(|| number("fps")),
        video_bitrate_kbps: number("videodatarate"),
        audio_bitrate_kbps: number("audiodatarate"),
        has_video: present("videocodecid"),
        has_audio: present("audiocodecid"),
        encoder: object.property("encoder").and_then(Amf::as_str).map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(props: &[(&str, Amf)]) -> Amf {
        Amf::Object(props.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect())
    }

    #[test]
    fn set_data_frame_on_metadata() {
        let values = vec![
            Amf::String("@setDataFrame".into()),
            Amf::String("onMetaData".into()),
            object(&[
                ("width", Amf::Number(320.0)),
                ("height", Amf::Number(240.0)),
                ("framerate", Amf::Number(30.0)),
                ("videodatarate", Amf::Number(0.0)),
                ("videocodecid", Amf::Number(7.0)),
                ("encoder", Amf::String("Lavf59.27.100".into())),
            ]),
        ];
        let metadata = from_data_message(&values).expect("metadata");
        assert_eq!(
            metadata,
            StreamMetadata {
                width: Some(320),
                height: Some(240),
                framerate: Some(30.0),
                video_bitrate_kbps: Some(0.0),
                audio_bitrate_kbps: None,
                has_video: Some(true),
                has_audio: None,
                encoder: Some("Lavf59.27.100".into()),
            }
        );
    }

    #[test]
    fn bare_on_metadata_and_garbage() {
        let values = vec![
            Amf::String("onMetaData".into()),
            object(&[
                ("audiocodecid", Amf::String("mp4a".into())),
                ("width", Amf::Number(-5.0)),
                ("height", Amf::Number(f64::NAN)),
            ]),
        ];
        let metadata = from_data_message(&values).expect("metadata");
        assert_eq!(metadata.has_audio, Some(true));
        assert_eq!((metadata.width, metadata.height), (None, None));
        assert_eq!(from_data_message(&[Amf::String("onCuePoint".into())]), None);
        assert_eq!(from_data_message(&[Amf::String("onMetaData".into()), Amf::Null]), None);
        assert_eq!(from_data_message(&[]), None);
    }
}
