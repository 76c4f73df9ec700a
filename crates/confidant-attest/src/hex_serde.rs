//! Serde helpers that write byte strings as lowercase hex, the form operators paste and compare.

use serde::{Deserialize, Deserializer, Serializer};

/// Serializes any byte container as a hex string.
pub(crate) fn serialize<T: AsRef<[u8]>, S: Serializer>(bytes: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes.as_ref()))
}

/// Deserializes a hex string into a byte container of the right length.
pub(crate) fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
where
    T: TryFrom<Vec<u8>>,
    D: Deserializer<'de>,
{
    let text = String::deserialize(d)?;
    let bytes = hex::decode(text.trim()).map_err(serde::de::Error::custom)?;
    let len = bytes.len();
    T::try_from(bytes).map_err(|_| {
        serde::de::Error::custom(format!("hex value has the wrong length ({len} bytes)"))
    })
}

/// The same for `Option<…>` fields.
pub(crate) mod option {
    use super::*;

    /// Serializes `Some(bytes)` as hex and `None` as null.
    pub(crate) fn serialize<T: AsRef<[u8]>, S: Serializer>(
        v: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&hex::encode(b.as_ref())),
            None => s.serialize_none(),
        }
    }

    /// Deserializes an optional hex string.
    pub(crate) fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: TryFrom<Vec<u8>>,
        D: Deserializer<'de>,
    {
        let Some(text) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        let bytes = hex::decode(text.trim()).map_err(serde::de::Error::custom)?;
        let len = bytes.len();
        T::try_from(bytes).map(Some).map_err(|_| {
            serde::de::Error::custom(format!("hex value has the wrong length ({len} bytes)"))
        })
    }
}
