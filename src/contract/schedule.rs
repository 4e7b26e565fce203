//! The production schedule record: what a B2MML `ProductionSchedule` or
//! the MES API's schedule carries, as plain data. `mes::b2mml` reads and
//! writes the documents; the history stores the record it is given.

/// One order to produce.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductionRequest {
    pub id: String,
    pub product: String,
    pub quantity: f64,
    pub unit: String,
    /// Equipment of each routing step, first step first.
    pub routing: Vec<String>,
    pub earliest_start_us: Option<i64>,
    pub latest_end_us: Option<i64>,
}

impl ProductionRequest {
    /// The machine of the first step.
    pub fn asset_id(&self) -> Option<&str> {
        self.routing.first().map(String::as_str)
    }
}

/// A production schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub id: String,
    pub published_us: Option<i64>,
    pub requests: Vec<ProductionRequest>,
}

impl Schedule {
    /// A schedule of `requests`, each with its first start (any unit), in
    /// start order (ties by id).
    pub fn in_start_order(
        id: &str,
        published_us: i64,
        mut requests: Vec<(f64, ProductionRequest)>,
    ) -> Schedule {
        requests.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.id.cmp(&b.1.id)));
        Schedule {
            id: id.to_string(),
            published_us: Some(published_us),
            requests: requests.into_iter().map(|r| r.1).collect(),
        }
    }
}
