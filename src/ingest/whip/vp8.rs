//! The one thing we read from a VP8 frame (RFC 6386 §9.1): whether it is a
//! keyframe and, if so, the picture size it starts.

/// `Some((width, height))` for a keyframe, `None` for an interframe or a
/// frame too short or malformed to tell.
pub fn keyframe_size(frame: &[u8]) -> Option<(u32, u32)> {
    let header = frame.get(..10)?;
    // Bit 0 of the frame tag is 0 on keyframes.
    if header[0] & 1 != 0 {
        return None;
    }
    if header[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u32::from(u16::from_le_bytes([header[6], header[7]]) & 0x3fff);
    let height = u32::from(u16::from_le_bytes([header[8], header[9]]) & 0x3fff);
    (width > 0 && height > 0).then_some((width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframes_give_their_size_and_nothing_else_does() {
        // Keyframe tag, start code, 640 (0x280) with scale bits set, 360.
        let key = [0x50, 0x2a, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x42, 0x68, 0x01, 0xff];
        assert_eq!(keyframe_size(&key), Some((640, 360)));
        let mut inter = key;
        inter[0] |= 1;
        assert_eq!(keyframe_size(&inter), None);
        let mut bad_start = key;
        bad_start[4] = 0;
        assert_eq!(keyframe_size(&bad_start), None);
        assert_eq!(keyframe_size(&key[..9]), None);
        assert_eq!(keyframe_size(&[]), None);
    }
}
