//! Making the elements of one set pairwise disjoint without changing their union.
//!
//! The kernel refuses overlapping elements in an interval set (the rbtree and
//! pipapo backends return EEXIST/ENOTEMPTY), but two rules with the same verdict
//! may well overlap (`10.0.0.0/8` port 22, and `10.1.0.0/16` ports 20-80). Since
//! every element of a set carries the same verdict, only the union matters; the
//! overlap is given to one of the rules for counting.

use crate::nft::Elem;

/// Field 0 of every element may be an interface pattern when `first_is_ifname`.
/// Interface wildcards must stay wildcards (nft has no syntax for "eth* except
/// eth0"), so they are never split: when two elements overlap, the one with the
/// narrower interface range is the one that gets cut. Wildcards are prefix sets,
/// so two interface ranges either nest or are disjoint.
pub fn make_disjoint(mut elems: Vec<Elem>, first_is_ifname: bool) -> Vec<Elem> {
    if elems.len() < 2 {
        return elems;
    }
    let sweep = sweep_field(&elems);
    // Largest first among equal starts, so that contained elements meet their container.
    elems.sort_by(|a, b| {
        let (a, b) = (a.ranges[sweep], b.ranges[sweep]);
        a.0.cmp(&b.0).then(b.1.cmp(&a.1))
    });
    let mut out = Vec::with_capacity(elems.len());
    let mut cluster: Vec<Elem> = Vec::new();
    let mut cluster_end = 0u128;
    for e in elems {
        let (lo, hi) = e.ranges[sweep];
        if !cluster.is_empty() && lo > cluster_end {
            resolve(std::mem::take(&mut cluster), first_is_ifname, &mut out);
        }
        cluster_end = if cluster.is_empty() { hi } else { cluster_end.max(hi) };
        cluster.push(e);
    }
    resolve(cluster, first_is_ifname, &mut out);
    out
}

/// The field with the most distinct ranges, along which elements are sorted and
/// cut into clusters that cannot overlap each other; in a policy of many distinct
/// addresses each cluster is one element, and the whole pass is a sort.
fn sweep_field(elems: &[Elem]) -> usize {
    let fields = elems[0].ranges.len();
    (0..fields)
        .max_by_key(|&f| {
            let mut ranges: Vec<(u128, u128)> = elems.iter().map(|e| e.ranges[f]).collect();
            ranges.sort_unstable();
            ranges.dedup();
            ranges.len()
        })
        .unwrap_or(0)
}

fn overlaps(a: &Elem, b: &Elem) -> bool {
    a.ranges.iter().zip(b.ranges.iter()).all(|(x, y)| x.0 <= y.1 && y.0 <= x.1)
}

/// `a` minus `b`, as disjoint pieces of `a` (at most two per field).
fn subtract(a: &Elem, b: &Elem) -> Vec<Elem> {
    let mut pieces = Vec::new();
    let mut rest = a.clone();
    for f in 0..a.ranges.len() {
        let (alo, ahi) = rest.ranges[f];
        let (blo, bhi) = b.ranges[f];
        if alo < blo {
            let mut p = rest.clone();
            p.ranges[f] = (alo, blo - 1);
            pieces.push(p);
        }
        if ahi > bhi {
            let mut p = rest.clone();
            p.ranges[f] = (bhi + 1, ahi);
            pieces.push(p);
        }
        rest.ranges[f] = (alo.max(blo), ahi.min(bhi));
    }
    pieces
}

/// Quadratic in the cluster's size; clusters are small unless one wide element
/// spans many others, and then most of them are contained and vanish at once.
fn resolve(cluster: Vec<Elem>, first_is_ifname: bool, out: &mut Vec<Elem>) {
    let start = out.len();
    for new in cluster {
        let mut pieces = vec![new.clone()];
        let mut i = start;
        while i < out.len() && !pieces.is_empty() {
            if !overlaps(&new, &out[i]) || !pieces.iter().any(|p| overlaps(p, &out[i])) {
                i += 1;
                continue;
            }
            let (nlo, nhi) = new.ranges[0];
            let (elo, ehi) = out[i].ranges[0];
            let new_inside = !first_is_ifname || (elo <= nlo && nhi <= ehi);
            if new_inside {
                let existing = &out[i];
                pieces = pieces
                    .iter()
                    .flat_map(|p| if overlaps(p, existing) { subtract(p, existing) } else { vec![p.clone()] })
                    .collect();
                i += 1;
            } else {
                // The existing element's interfaces are inside the new one's: cut it.
                let existing = out.swap_remove(i);
                out.extend(subtract(&existing, &new));
            }
        }
        out.extend(pieces);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(tag: u32, ranges: &[(u128, u128)]) -> Elem {
        Elem { ranges: ranges.into(), tag }
    }

    /// Checks disjointness, and that every point of a small grid is covered by
    /// the output exactly when it was covered by the input.
    fn check(input: Vec<Elem>, ifname: bool) -> Vec<Elem> {
        let out = make_disjoint(input.clone(), ifname);
        for (i, a) in out.iter().enumerate() {
            for b in &out[i + 1..] {
                assert!(!overlaps(a, b), "{a:?} overlaps {b:?}");
            }
        }
        let dims = input[0].ranges.len();
        let mut point = vec![0u128; dims];
        loop {
            let inside =
                |v: &[Elem]| v.iter().any(|e| e.ranges.iter().zip(&point).all(|(r, p)| r.0 <= *p && *p <= r.1));
            assert_eq!(inside(&input), inside(&out), "at {point:?}");
            let mut d = 0;
            while d < dims {
                point[d] += 1;
                if point[d] <= 12 {
                    break;
                }
                point[d] = 0;
                d += 1;
            }
            if d == dims {
                break;
            }
        }
        out
    }

    #[test]
    fn disjoint_elements_are_untouched() {
        let out = check(vec![e(1, &[(1, 1), (5, 5)]), e(2, &[(2, 2), (5, 5)]), e(3, &[(3, 4), (1, 9)])], false);
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn contained_elements_vanish() {
        let out = check(vec![e(2, &[(3, 3), (4, 4)]), e(1, &[(0, 10), (0, 10)]), e(3, &[(5, 6), (7, 7)])], false);
        assert_eq!(out, vec![e(1, &[(0, 10), (0, 10)])]);
    }

    #[test]
    fn partial_overlaps_are_cut() {
        check(
            vec![e(1, &[(0, 5), (0, 5)]), e(2, &[(3, 8), (3, 8)]), e(3, &[(4, 12), (0, 1)]), e(4, &[(2, 2), (0, 12)])],
            false,
        );
    }

    #[test]
    fn interface_wildcards_are_never_split() {
        // field 0: "eth*" = 0..=9, "eth0" = 3..=3
        let out = check(vec![e(1, &[(3, 3), (0, 10)]), e(2, &[(0, 9), (5, 6)]), e(3, &[(0, 9), (8, 12)])], true);
        for x in &out {
            assert!(x.ranges[0] == (0, 9) || x.ranges[0] == (3, 3), "{x:?}");
        }
    }
}
