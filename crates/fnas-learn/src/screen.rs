//! The screen of `fnas --screen K` (our extension, off by default): the controller draws
//! `K` times the batch and the critic keeps the batch's worth it rates best.

/// The screen's choice: the indices of the `n` best of `scores` (`None` = already
/// evaluated in this search, ranked after every scored one), highest score first, ties
/// and `None`s in draw order. A NaN score ranks with the `None`s.
pub fn screen_order(scores: &[Option<f64>], n: usize) -> Vec<usize> {
    let key = |i: usize| scores[i].filter(|s| !s.is_nan());
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| match (key(a), key(b)) {
        (Some(x), Some(y)) => y.total_cmp(&x).then(a.cmp(&b)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.cmp(&b),
    });
    idx.truncate(n);
    idx
}
