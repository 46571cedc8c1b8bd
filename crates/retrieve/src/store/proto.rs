//! The few protobuf messages of Milvus' gRPC `Insert`, encoded and decoded by hand.
//!
//! Bulk loads go over gRPC because Milvus parses a REST insert's JSON on its own cores, which
//! caps the load far below what the same server takes as protobuf. The messages needed are
//! small (`InsertRequest` with a float-vector column and the dynamic-field JSON column; the
//! `MutationResult` answer), so they are written here against the field numbers of
//! `milvus-proto` (`milvus.proto`, `schema.proto`, `common.proto`) instead of bringing a
//! protobuf code generator into the build.

/// `schema.DataType` values.
const JSON: u64 = 23;
const FLOAT_VECTOR: u64 = 101;

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn uint(out: &mut Vec<u8>, field: u32, v: u64) {
    tag(out, field, VARINT);
    varint(out, v);
}

fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    tag(out, field, LEN);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A nested message written by `f`.
fn message(out: &mut Vec<u8>, field: u32, f: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    f(&mut inner);
    bytes(out, field, &inner);
}

/// `milvus.InsertRequest` of `rows` rows into `collection`: the float vectors (`dim` values per
/// row) into the field `vector_field`, and one JSON object per row into the dynamic field.
pub(crate) fn insert_request(collection: &str, vector_field: &str, dim: usize, vectors: &[f32], dynamic: &[Vec<u8>]) -> Vec<u8> {
    let rows = dynamic.len();
    debug_assert_eq!(vectors.len(), rows * dim);
    let mut out = Vec::with_capacity(vectors.len() * 4 + dynamic.iter().map(|d| d.len() + 3).sum::<usize>() + 256);
    bytes(&mut out, 3, collection.as_bytes()); // collection_name
    message(&mut out, 5, |f| {
        // fields_data: FieldData { type, field_name, vectors: VectorField { dim, float_vector } }
        uint(f, 1, FLOAT_VECTOR);
        bytes(f, 2, vector_field.as_bytes());
        message(f, 4, |v| {
            uint(v, 1, dim as u64);
            message(v, 2, |a| {
                // FloatArray { repeated float data = 1 }, packed.
                tag(a, 1, LEN);
                varint(a, (vectors.len() * 4) as u64);
                a.reserve(vectors.len() * 4);
                for x in vectors {
                    a.extend_from_slice(&x.to_le_bytes());
                }
            });
        });
    });
    message(&mut out, 5, |f| {
        // FieldData { type: JSON, field_name: "$meta", scalars: { json_data }, is_dynamic }
        uint(f, 1, JSON);
        bytes(f, 2, b"$meta");
        message(f, 3, |s| {
            message(s, 9, |j| {
                for row in dynamic {
                    bytes(j, 1, row);
                }
            })
        });
        uint(f, 6, 1);
    });
    uint(&mut out, 7, rows as u64); // num_rows
    out
}

/// A protobuf field as read: its number and its value.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn read_varint(b: &mut &[u8]) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = b.split_first().ok_or("a truncated varint")?;
        *b = rest;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(v);
        }
    }
    Err("a varint longer than 10 bytes".into())
}

/// The fields of one encoded message, or an error for malformed input.
fn fields(mut b: &[u8]) -> Result<Vec<(u32, Field<'_>)>, String> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = read_varint(&mut b)?;
        let (field, wire) = ((key >> 3) as u32, (key & 7) as u8);
        let value = match wire {
            VARINT => Field::Varint(read_varint(&mut b)?),
            LEN => {
                let n = usize::try_from(read_varint(&mut b)?).map_err(|_| "a length beyond memory")?;
                if n > b.len() {
                    return Err(format!("field {field} claims {n} bytes, {} remain", b.len()));
                }
                let (v, rest) = b.split_at(n);
                b = rest;
                Field::Bytes(v)
            }
            FIXED64 | FIXED32 => {
                let n = if wire == FIXED64 { 8 } else { 4 };
                if n > b.len() {
                    return Err("a truncated fixed-size field".into());
                }
                b = &b[n..];
                Field::Fixed
            }
            other => return Err(format!("wire type {other} (field {field}) is not supported")),
        };
        out.push((field, value));
    }
    Ok(out)
}

/// `milvus.MutationResult` decoded: the ids of the inserted rows, or the server's reason for
/// refusing them (`common.Status`: `error_code`, `reason`, `code`).
pub(crate) fn insert_ids(answer: &[u8]) -> Result<Vec<u64>, String> {
    let mut ids = Vec::new();
    for (number, value) in fields(answer)? {
        match (number, value) {
            (1, Field::Bytes(status)) => {
                let (mut failed, mut reason) = (false, String::new());
                for (n, v) in fields(status)? {
                    match (n, v) {
                        (1 | 3, Field::Varint(code)) if code != 0 => failed = true,
                        (2, Field::Bytes(r)) => reason = String::from_utf8_lossy(r).into_owned(),
                        _ => {}
                    }
                }
                if failed {
                    return Err(if reason.is_empty() { "the server refused the insert without a reason".into() } else { reason });
                }
            }
            (2, Field::Bytes(id_msg)) => {
                // IDs { LongArray int_id = 1 { repeated int64 data = 1 } }
                for (n, v) in fields(id_msg)? {
                    if let (1, Field::Bytes(long_array)) = (n, v) {
                        for (m, data) in fields(long_array)? {
                            match (m, data) {
                                (1, Field::Bytes(mut packed)) => {
                                    while !packed.is_empty() {
                                        ids.push(read_varint(&mut packed)?);
                                    }
                                }
                                (1, Field::Varint(id)) => ids.push(id),
                                _ => {}
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request as protobuf would lay it out, checked byte by byte on a tiny one.
    #[test]
    fn insert_request_by_hand() {
        let got = insert_request("c", "vector", 2, &[1.0, -2.0], &[br#"{"s":"a"}"#.to_vec()]);
        let mut want = vec![0x1a, 1, b'c']; // 3: "c"
        let floats: Vec<u8> = [1.0f32, -2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        let float_array = [vec![0x0a, 8], floats].concat(); // 1: packed floats
        let vector_field = [vec![0x08, 2, 0x12, float_array.len() as u8], float_array].concat(); // dim, float_vector
        let field = [vec![0x08, 101, 0x12, 6], b"vector".to_vec(), vec![0x22, vector_field.len() as u8], vector_field].concat();
        want.extend([0x2a, field.len() as u8]);
        want.extend(field);
        let json_array = [vec![0x0a, 9], br#"{"s":"a"}"#.to_vec()].concat();
        let scalars = [vec![0x4a, json_array.len() as u8], json_array].concat(); // 9: json_data
        let field = [vec![0x08, 23, 0x12, 5], b"$meta".to_vec(), vec![0x1a, scalars.len() as u8], scalars, vec![0x30, 1]].concat();
        want.extend([0x2a, field.len() as u8]);
        want.extend(field);
        want.extend([0x38, 1]); // 7: num_rows
        assert_eq!(got, want);
    }

    #[test]
    fn mutation_results_give_ids_or_the_reason() {
        // status { error_code 0 }, IDs { int_id { data: [5, 300] packed } }, insert_cnt 2
        let answer = [0x0a, 0x00, 0x12, 0x07, 0x0a, 0x05, 0x0a, 0x03, 5, 0xac, 0x02, 0x30, 2];
        assert_eq!(insert_ids(&answer).unwrap(), vec![5, 300]);
        // status { error_code 1, reason "no" }
        let refused = [0x0a, 0x06, 0x08, 0x01, 0x12, 0x02, b'n', b'o'];
        assert_eq!(insert_ids(&refused).unwrap_err(), "no");
        // Truncated or malformed answers are errors, never a panic.
        assert!(insert_ids(&[0x12, 0x09, 0x0a]).is_err());
        assert!(insert_ids(&[0x0f]).is_err());
        assert!(insert_ids(&[0xff; 12]).is_err());
    }
}
