//! Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as 1, 2,
//! 3", SC 2011), bit-identical to `pk_philox4x32_10` in `kernels/common.cuh`.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = a as u64 * b as u64;
    ((p >> 32) as u32, p as u32)
}

/// Ten Philox rounds of `counter` under `key`.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for _ in 0..10 {
        let (hi0, lo0) = mulhilo(M0, c[0]);
        let (hi1, lo1) = mulhilo(M1, c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
        k[0] = k[0].wrapping_add(W0);
        k[1] = k[1].wrapping_add(W1);
    }
    c
}

/// Uniform in (0, 1) from the top 23 bits of `bits`, (k + 1/2) 2^-23, as
/// `pk_uniform_open`; exactly representable in f32.
pub fn uniform_open(bits: u32) -> f64 {
    ((bits >> 9) as f64 + 0.5) * (1.0 / 8_388_608.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer vectors of Philox4x32-10 from the Random123 distribution.
    #[test]
    fn known_answers() {
        assert_eq!(
            philox4x32_10([0, 0, 0, 0], [0, 0]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0]
            ),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    #[test]
    fn uniform_stays_inside_the_open_interval() {
        assert!(uniform_open(0) > 0.0);
        assert!(uniform_open(u32::MAX) < 1.0);
        assert_eq!(uniform_open(0x8000_0000), 0.5 + 0.5 / 8_388_608.0);
        // Every value survives a round trip through f32.
        for bits in [
            0u32,
            1 << 9,
            0x1234_5678,
            0x8000_0000,
            0xffff_fe00,
            u32::MAX,
        ] {
            let u = uniform_open(bits);
            assert_eq!(u as f32 as f64, u);
        }
    }
}
