//! One pager for every listing: the catalogue and an auction's history come
//! a page at a time, and every command and prompt word that shows them walks
//! the pages the same way.

use gavel::auction::{AcceptedBid, AuctionInfo, AuctionPage, HistoryPage};
use gavel::client::ClientError;

/// A page of items, and where the next page starts (empty after the last).
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: String,
}

impl From<AuctionPage> for Page<AuctionInfo> {
    fn from(page: AuctionPage) -> Self {
        Page { items: page.auctions, next_page_token: page.next_page_token }
    }
}

impl From<HistoryPage> for Page<AcceptedBid> {
    fn from(page: HistoryPage) -> Self {
        Page { items: page.bids, next_page_token: page.next_page_token }
    }
}

/// Fetches every page in turn from the first, `fetch` being given each
/// page's token, and hands each item to `each` as its page arrives: a long
/// listing prints as it comes. Stops at the first error and returns it;
/// the items of the pages before it were handed on.
pub async fn for_each_item<T>(
    mut fetch: impl AsyncFnMut(&str) -> Result<Page<T>, ClientError>,
    mut each: impl FnMut(&T),
) -> Result<(), ClientError> {
    let mut page_token = String::new();
    loop {
        let page = fetch(&page_token).await?;
        page.items.iter().for_each(&mut each);
        if page.next_page_token.is_empty() {
            return Ok(());
        }
        page_token = page.next_page_token;
    }
}
