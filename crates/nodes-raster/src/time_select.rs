//! `stack`'s `time` and `times`: only the items whose datetime a date or range selects are
//! stacked ([`flow_core::time`]), before they are grouped into time steps. The grid and CRS, when
//! taken from the items, are those of the items kept.

use flow_core::time::DateSelection;

use crate::error::RasterError;
use crate::stac::ItemRef;

/// The `items` that `dates` selects by their datetime, in their order; all of them without a
/// selection.
///
/// # Errors
/// [`RasterError::InvalidData`] (exit 3) when the selection keeps none, naming it and the
/// items' dates.
pub(crate) fn select(
    items: Vec<ItemRef>,
    dates: Option<&DateSelection>,
) -> Result<Vec<ItemRef>, RasterError> {
    let Some(dates) = dates else {
        return Ok(items);
    };
    let labels: Vec<String> = items.iter().map(|i| i.datetime.clone()).collect();
    let keep = dates
        .select_some_of("stack", "item(s)", &labels)
        .map_err(RasterError::InvalidData)?;
    Ok(items
        .into_iter()
        .enumerate()
        .filter(|(i, _)| keep.binary_search(i).is_ok())
        .map(|(_, item)| item)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, datetime: &str) -> ItemRef {
        ItemRef {
            id: id.into(),
            datetime: datetime.into(),
            bbox: None,
            assets: Vec::new(),
            remote: None,
        }
    }

    fn ids(items: &[ItemRef]) -> Vec<&str> {
        items.iter().map(|i| i.id.as_str()).collect()
    }

    #[test]
    fn items_are_kept_by_the_utc_date_of_their_datetime() {
        let items = vec![
            item("a", "2021-07-14T15:49:11Z"),
            item("b", "2021-08-03T15:49:09Z"),
            item("c", "2021-08-03T23:30:00-01:00"),
            item("d", "2021-08-13T15:49:11Z"),
        ];
        let sel = |s: &str| DateSelection::parse(s).unwrap();
        assert_eq!(
            ids(&select(items.clone(), None).unwrap()),
            ["a", "b", "c", "d"]
        );
        let kept = select(items.clone(), Some(&sel("2021-08-03"))).unwrap();
        assert_eq!(ids(&kept), ["b"], "c is on 2021-08-04 in UTC");
        let kept = select(items.clone(), Some(&sel("../2021-08-04"))).unwrap();
        assert_eq!(ids(&kept), ["a", "b", "c"]);
        let list = DateSelection::parse_list(&["2021-08-13".into(), "2021-07-14".into()]).unwrap();
        assert_eq!(
            ids(&select(items.clone(), Some(&list)).unwrap()),
            ["a", "d"]
        );
        let e = select(items, Some(&sel("2021-07-15"))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "stack: `time = \"2021-07-15\"` selects none of the 4 item(s); the dates available: \
             2021-07-14, 2021-08-03, 2021-08-04, 2021-08-13"
        );
        assert_eq!(flow_core::NodeError::from(e).exit_code().code(), 3);
    }
}
