//! How search flags a hit "duplicate": the score a package's search threshold applies to
//! ([`SearchFlag`]), and the margin score ([`margins`]) that judges a hit against the query's
//! own neighbourhood.
//!
//! A pair threshold is chosen on balanced pairs; a search hit is one of the nearest of
//! thousands of stored questions, where real duplicates are rare. A general question ("How can
//! I make money online?") sits close to many stored ones, so all its top hits clear a fixed
//! similarity threshold, duplicates or not; a real duplicate stands out from the query's
//! background. The margin flag measures exactly that: a hit's similarity minus the mean
//! similarity of the query's hits ranked [`MARGIN_SKIP`]` + 1` to [`MARGIN_DEPTH`].
//!
//! ```
//! use encoder::flag::{margins, MARGIN_DEPTH};
//!
//! // Five close hits, then a background of two.
//! let m = margins(&[0.95, 0.9, 0.8, 0.8, 0.8, 0.6, 0.4]).unwrap();
//! assert!((m[0] - 0.45).abs() < 1e-12); // 0.95 - (0.6 + 0.4) / 2
//! // Five hits or fewer: no background, no margin.
//! assert!(margins(&[0.9, 0.8]).is_none());
//! assert_eq!(MARGIN_DEPTH, 15);
//! ```

/// Hits ranked at or above this are never part of the background: a user looks at them, and a
/// duplicate is among them.
pub const MARGIN_SKIP: usize = 5;

/// How many hits after the first [`MARGIN_SKIP`] make a query's background.
pub const MARGIN_BACKGROUND: usize = 10;

/// How deep a search must look to judge its hits by margin, whatever it shows.
pub const MARGIN_DEPTH: usize = MARGIN_SKIP + MARGIN_BACKGROUND;

/// The score a package's search threshold applies to (`metrics.json`'s `search_flag`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchFlag {
    /// The verdict head's probability.
    HeadProbability,
    /// The energy's similarity.
    Similarity,
    /// The similarity minus the query's background ([`margins`]).
    Margin,
}

impl SearchFlag {
    /// Every flag score, in the order reports list them.
    pub const ALL: [SearchFlag; 3] = [SearchFlag::HeadProbability, SearchFlag::Similarity, SearchFlag::Margin];

    /// What search flags on when `metrics.json` does not say: the head when there is one.
    pub fn default_for(has_head: bool) -> Self {
        if has_head {
            SearchFlag::HeadProbability
        } else {
            SearchFlag::Similarity
        }
    }

    /// How reports name it.
    pub fn describe(self) -> &'static str {
        match self {
            SearchFlag::HeadProbability => "head probability",
            SearchFlag::Similarity => "similarity",
            SearchFlag::Margin => "margin",
        }
    }

    /// How many hits a search that shows `k` must rank to judge them with this flag.
    pub fn depth(self, k: usize) -> usize {
        match self {
            SearchFlag::Margin => k.max(MARGIN_DEPTH),
            _ => k,
        }
    }
}

/// A query's background: the mean similarity of its hits (`similarities`, best first) ranked
/// [`MARGIN_SKIP`]` + 1` to [`MARGIN_DEPTH`], those that exist; `None` with none.
pub fn background(similarities: &[f64]) -> Option<f64> {
    let window = similarities.get(MARGIN_SKIP..)?;
    let window = &window[..window.len().min(MARGIN_BACKGROUND)];
    (!window.is_empty()).then(|| window.iter().sum::<f64>() / window.len() as f64)
}

/// Margin flag scores of one query's hits (`similarities`, best first): each similarity minus
/// the query's [`background`]. `None` when the hits are too few to have one.
pub fn margins(similarities: &[f64]) -> Option<Vec<f64>> {
    let b = background(similarities)?;
    Some(similarities.iter().map(|s| s - b).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_background_is_the_mean_of_hits_six_to_fifteen() {
        let m = margins(&[0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.2]).unwrap();
        assert!((m[0] - 0.6).abs() < 1e-12 && (m[6] + 0.1).abs() < 1e-12, "{m:?}");
        // Only MARGIN_BACKGROUND hits count: the hits after MARGIN_DEPTH do not.
        let mut sims = vec![0.9; MARGIN_SKIP];
        sims.extend(vec![0.5; MARGIN_BACKGROUND]);
        sims.extend(vec![-5.0; 4]);
        assert!((margins(&sims).unwrap()[0] - 0.4).abs() < 1e-12);
        assert_eq!(background(&[0.9; MARGIN_SKIP]), None);
        assert_eq!(background(&[0.9, 0.9, 0.9, 0.9, 0.9, 0.3]), Some(0.3));
    }

    #[test]
    fn only_the_margin_looks_deeper_than_it_shows() {
        assert_eq!(SearchFlag::Margin.depth(3), MARGIN_DEPTH);
        assert_eq!(SearchFlag::Margin.depth(40), 40);
        assert_eq!(SearchFlag::Similarity.depth(3), 3);
        assert_eq!(SearchFlag::HeadProbability.depth(3), 3);
    }
}
