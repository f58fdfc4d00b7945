//! [`pick_mut`]: several distinct elements of a slice, mutably, in a given order, without moving
//! them.

use smallvec::SmallVec;

/// Mutable references to `items[i]` for each `i` of `indices`, in the order of `indices`; `None`
/// for an index out of range or seen before. Sorting a copy of the indices and splitting the slice
/// at each one hands out disjoint borrows: no element is copied or moved.
pub(crate) fn pick_mut<'a, T>(
    items: &'a mut [T],
    indices: &[usize],
) -> SmallVec<[Option<&'a mut T>; 4]> {
    let mut out: SmallVec<[Option<&'a mut T>; 4]> = indices.iter().map(|_| None).collect();
    if let [i] = indices {
        out[0] = items.get_mut(*i);
        return out;
    }
    let mut order: SmallVec<[(usize, usize); 4]> = indices
        .iter()
        .enumerate()
        .map(|(pos, &i)| (i, pos))
        .collect();
    order.sort_unstable();
    let mut rest = items;
    let mut base = 0;
    for (i, pos) in order {
        if i < base {
            continue; // a duplicate
        }
        let taken = std::mem::take(&mut rest);
        let Some((item, tail)) = taken.get_mut(i - base..).and_then(<[T]>::split_first_mut) else {
            break;
        };
        out[pos] = Some(item);
        rest = tail;
        base = i + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::pick_mut;

    #[test]
    fn picks_in_the_given_order_and_skips_duplicates_and_strays() {
        let mut v = [10, 11, 12, 13, 14];
        let got: Vec<Option<i32>> = pick_mut(&mut v, &[3, 0, 3, 9, 4])
            .into_iter()
            .map(|r| r.map(|x| *x))
            .collect();
        assert_eq!(got, [Some(13), Some(10), None, None, Some(14)]);
        for r in pick_mut(&mut v, &[4, 1]).into_iter().flatten() {
            *r += 100;
        }
        assert_eq!(v, [10, 111, 12, 13, 114]);
        assert_eq!(pick_mut(&mut v, &[2])[0].as_deref(), Some(&12));
        assert!(pick_mut(&mut v, &[7])[0].is_none());
        assert!(pick_mut::<i32>(&mut [], &[]).is_empty());
    }
}
