//! IDs of pods, containers and exec sessions: 64 random hex digits, as
//! containerd's, so kubelet and crictl see the shape they expect.

/// Where the randomness comes from.
pub const RANDOM_SOURCE: &str = "/dev/urandom";

/// A new random ID: 64 hex digits.
pub fn new_id() -> std::io::Result<String> {
    let mut b = [0u8; 32];
    std::fs::File::open(RANDOM_SOURCE)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_64_hex_digits_and_differ() {
        let (a, b) = (super::new_id().expect("id"), super::new_id().expect("id"));
        assert_eq!(a.len(), 64);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }
}
