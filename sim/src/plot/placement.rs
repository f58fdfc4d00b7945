//! Where a frontier label goes: candidate spots around its marker, and the rectangle geometry
//! that scores them (overlap, containment, a line crossing).

/// Candidate label spots around a frontier point per distance from it.
pub(super) const SPOTS_PER_TIER: usize = 8;

/// A rectangle in backend pixels.
#[derive(Clone, Copy, Debug)]
pub(super) struct Rect {
    pub(super) x0: i32,
    pub(super) y0: i32,
    pub(super) x1: i32,
    pub(super) y1: i32,
}

impl Rect {
    pub(super) fn around((x, y): (i32, i32), r: i32) -> Self {
        Rect {
            x0: x - r,
            y0: y - r,
            x1: x + r,
            y1: y + r,
        }
    }

    pub(super) fn overlaps(&self, o: &Rect) -> bool {
        self.x0 < o.x1 && o.x0 < self.x1 && self.y0 < o.y1 && o.y0 < self.y1
    }

    pub(super) fn inside(&self, o: &Rect) -> bool {
        self.x0 >= o.x0 && self.x1 <= o.x1 && self.y0 >= o.y0 && self.y1 <= o.y1
    }

    /// Whether the segment from `a` to `b` crosses this rectangle (Liang–Barsky clipping).
    pub(super) fn cut_by(&self, a: (i32, i32), b: (i32, i32)) -> bool {
        let (ax, ay) = (f64::from(a.0), f64::from(a.1));
        let (dx, dy) = (f64::from(b.0) - ax, f64::from(b.1) - ay);
        let (mut t0, mut t1) = (0.0_f64, 1.0_f64);
        for (p, q) in [
            (-dx, ax - f64::from(self.x0)),
            (dx, f64::from(self.x1) - ax),
            (-dy, ay - f64::from(self.y0)),
            (dy, f64::from(self.y1) - ay),
        ] {
            if p == 0.0 {
                if q < 0.0 {
                    return false;
                }
            } else {
                let t = q / p;
                if p < 0.0 {
                    t0 = t0.max(t);
                } else {
                    t1 = t1.min(t);
                }
                if t0 > t1 {
                    return false;
                }
            }
        }
        true
    }
}

/// Candidate boxes for a `w`×`h` label of a marker of radius `r` at `(x, y)`, best first:
/// diagonal spots (clear of a falling frontier's line), then sides, then farther out.
pub(super) fn label_spots((x, y): (i32, i32), r: i32, w: i32, h: i32) -> Vec<Rect> {
    let mut out = Vec::new();
    for far in [3, 16, 32] {
        let d = r + far;
        for (x0, y0) in [
            (x + d - 3, y - d - h + 3),
            (x - d - w + 3, y + d - 3),
            (x + d, y - h / 2),
            (x - d - w, y - h / 2),
            (x - d - w + 3, y - d - h + 3),
            (x + d - 3, y + d - 3),
            (x - w / 2, y - d - h),
            (x - w / 2, y + d),
        ] {
            out.push(Rect {
                x0,
                y0,
                x1: x0 + w,
                y1: y0 + h,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cut_rectangles() {
        let r = Rect {
            x0: 10,
            y0: 10,
            x1: 20,
            y1: 20,
        };
        assert!(r.cut_by((0, 0), (30, 30)));
        assert!(r.cut_by((15, 0), (15, 12)));
        assert!(!r.cut_by((0, 0), (30, 5)));
        assert!(!r.cut_by((0, 30), (5, 0)));
        assert!(r.overlaps(&Rect::around((20, 20), 2)));
        assert!(!r.overlaps(&Rect::around((30, 30), 2)));
    }
}
