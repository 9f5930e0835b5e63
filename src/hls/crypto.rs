//! AES-128 (METHOD=AES-128: CBC, PKCS7 over the whole resource) and the
//! per-stream content keys.

use std::collections::BTreeMap;

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockEncryptMut, KeyIvInit};
use bytes::Bytes;

pub(crate) type Block = [u8; 16];

type Aes128CbcEnc = cbc::Encryptor<aes::Aes128>;

pub(crate) fn random_block() -> Block {
    rand::random()
}

/// Encrypts the concatenation of `pieces` as one resource, with one padding
/// at the end (a parent segment made of its clear parts, or a single part).
pub(crate) fn encrypt_concat(key: &Block, iv: &Block, pieces: &[Bytes]) -> Bytes {
    let len: usize = pieces.iter().map(Bytes::len).sum();
    let mut buf = Vec::with_capacity(len + 16);
    for piece in pieces {
        buf.extend_from_slice(piece);
    }
    // PKCS7 always adds 1..=16 bytes.
    buf.resize(len + 16 - len % 16, 0);
    let cipher = Aes128CbcEnc::new(key.into(), iv.into());
    match cipher.encrypt_padded_mut::<Pkcs7>(&mut buf, len) {
        Ok(ciphertext) => {
            let out_len = ciphertext.len();
            buf.truncate(out_len);
            Bytes::from(buf)
        }
        // Unreachable with the buffer sized above; fall back to the allocating path.
        Err(_) => {
            let cipher = Aes128CbcEnc::new(key.into(), iv.into());
            Bytes::from(cipher.encrypt_padded_vec_mut::<Pkcs7>(&buf[..len]))
        }
    }
}

/// Content keys of one stream. A key's id is `msn / rotation`, so every
/// rendition rotates at the same sequence numbers and a key's lifetime
/// follows from the lowest sequence number still retained.
#[derive(Debug)]
pub(crate) struct KeyRing {
    rotation: u64,
    keys: BTreeMap<u64, Block>,
}

impl KeyRing {
    pub(crate) fn new(rotation: u64) -> Self {
        Self {
            rotation: rotation.max(1),
            keys: BTreeMap::new(),
        }
    }

    pub(crate) fn key_for_msn(&mut self, msn: u64) -> (u64, Block) {
        let id = msn / self.rotation;
        let key = *self.keys.entry(id).or_insert_with(random_block);
        (id, key)
    }

    pub(crate) fn get(&self, id: u64) -> Option<Block> {
        self.keys.get(&id).copied()
    }

    /// Forgets keys that no retained segment at or above `min_msn` can use.
    pub(crate) fn retain_from_msn(&mut self, min_msn: u64) {
        let min_id = min_msn / self.rotation;
        self.keys.retain(|id, _| *id >= min_id);
    }

    pub(crate) fn clear(&mut self) {
        self.keys.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
pub(crate) fn decrypt(key: &Block, iv: &Block, data: &[u8]) -> Option<Vec<u8>> {
    use aes::cipher::BlockDecryptMut;
    cbc::Decryptor::<aes::Aes128>::new(key.into(), iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(data)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concatenation_is_one_padded_resource() {
        let key = random_block();
        let iv = random_block();
        let pieces = [Bytes::from(vec![1u8; 20]), Bytes::from(vec![2u8; 12])];
        let whole = encrypt_concat(&key, &iv, &pieces);
        assert_eq!(whole.len(), 48, "32 bytes of plaintext get a full padding block");
        let clear = decrypt(&key, &iv, &whole).expect("decrypts");
        assert_eq!(&clear[..20], &[1u8; 20]);
        assert_eq!(&clear[20..], &[2u8; 12]);
        let single = encrypt_concat(&key, &iv, &pieces[..1]);
        assert_eq!(single.len(), 32);
        assert_eq!(decrypt(&key, &iv, &single).expect("decrypts"), vec![1u8; 20]);
    }

    #[test]
    fn key_ring_rotates_by_sequence_number_and_forgets_old_keys() {
        let mut ring = KeyRing::new(3);
        let (a, ka) = ring.key_for_msn(6);
        let (b, kb) = ring.key_for_msn(8);
        let (c, kc) = ring.key_for_msn(9);
        assert_eq!((a, b, c), (2, 2, 3));
        assert_eq!(ka, kb);
        assert_ne!(ka, kc);
        ring.retain_from_msn(9);
        assert_eq!(ring.get(2), None);
        assert_eq!(ring.get(3), Some(kc));
    }
}
