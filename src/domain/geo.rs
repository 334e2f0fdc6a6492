//! Positions and distances for check-ins: great-circle (haversine) distance on
//! a spherical Earth, and the bounds a coordinate must lie within.

/// Mean Earth radius (IUGG), metres.
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Chongqing's bounding box, with a small margin: training sites must lie inside.
pub const CHONGQING_LAT_MIN: f64 = 28.0;
pub const CHONGQING_LAT_MAX: f64 = 32.3;
pub const CHONGQING_LON_MIN: f64 = 105.2;
pub const CHONGQING_LON_MAX: f64 = 110.3;

/// Great-circle distance between two (lat, lon) points in degrees, metres.
pub fn distance_m(lat_a: f64, lon_a: f64, lat_b: f64, lon_b: f64) -> f64 {
    let (phi_a, phi_b) = (lat_a.to_radians(), lat_b.to_radians());
    let d_phi = (lat_b - lat_a).to_radians();
    let d_lambda = (lon_b - lon_a).to_radians();
    let h =
        (d_phi / 2.0).sin().powi(2) + phi_a.cos() * phi_b.cos() * (d_lambda / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// A valid position anywhere on Earth (finite, lat within ±90, lon within ±180).
pub fn is_valid_position(lat: f64, lon: f64) -> bool {
    lat.is_finite()
        && lon.is_finite()
        && (-90.0..=90.0).contains(&lat)
        && (-180.0..=180.0).contains(&lon)
}

/// A position inside Chongqing's bounding box.
pub fn is_in_chongqing(lat: f64, lon: f64) -> bool {
    (CHONGQING_LAT_MIN..=CHONGQING_LAT_MAX).contains(&lat)
        && (CHONGQING_LON_MIN..=CHONGQING_LON_MAX).contains(&lon)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_match_known_values() {
        assert!(distance_m(29.56, 106.55, 29.56, 106.55) < 1e-6);
        // One thousandth of a degree of latitude is about 111 metres.
        let d = distance_m(29.560, 106.55, 29.561, 106.55);
        assert!((d - 111.2).abs() < 0.5, "{d}");
        // Chongqing (解放碑) to Wanzhou is roughly 230 km.
        let d = distance_m(29.5576, 106.5775, 30.8078, 108.4089);
        assert!((220_000.0..240_000.0).contains(&d), "{d}");
    }

    #[test]
    fn bounds_refuse_nonsense() {
        assert!(!is_valid_position(f64::NAN, 0.0));
        assert!(!is_valid_position(91.0, 0.0));
        assert!(!is_valid_position(0.0, 181.0));
        assert!(is_in_chongqing(29.56, 106.55));
        assert!(!is_in_chongqing(39.9, 116.4));
    }
}
