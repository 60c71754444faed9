//! The product catalogue: a product id always has the same name, category and price, in every
//! run whatever the seed, and popularity is skewed (Zipf-like) so a few products get most views.

use ecommerce_events::Price;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The eight categories, with their price range in cents.
pub const CATEGORIES: [(&str, i64, i64); 8] = [
    ("Electronics", 1_999, 199_999),
    ("Books", 499, 5_999),
    ("Clothing", 999, 24_999),
    ("Home & Kitchen", 799, 49_999),
    ("Sports & Outdoors", 999, 39_999),
    ("Beauty", 399, 9_999),
    ("Toys & Games", 599, 14_999),
    ("Grocery", 99, 2_999),
];

const BRANDS: [&str; 12] = [
    "Acme",
    "Nordwind",
    "Zenith",
    "Bluebird",
    "Kestrel",
    "Orion",
    "Maple & Co",
    "Tidewater",
    "Lumen",
    "Granite",
    "Fable",
    "Polaris",
];

const ADJECTIVES: [&str; 12] = [
    "Classic",
    "Compact",
    "Deluxe",
    "Eco",
    "Essential",
    "Pro",
    "Ultra",
    "Smart",
    "Vintage",
    "Premium",
    "Everyday",
    "Lightweight",
];

/// Nouns per category, in the order of [`CATEGORIES`].
const NOUNS: [&[&str]; 8] = [
    &[
        "Headphones",
        "Monitor",
        "Laptop",
        "Smartphone",
        "Bluetooth Speaker",
        "Keyboard",
        "Webcam",
        "Power Bank",
    ],
    &[
        "Cookbook",
        "Novel",
        "Travel Guide",
        "Notebook",
        "Poetry Collection",
        "Atlas",
        "Biography",
    ],
    &[
        "T-Shirt", "Jacket", "Jeans", "Sneakers", "Hoodie", "Scarf", "Raincoat",
    ],
    &[
        "Coffee Maker",
        "Frying Pan",
        "Knife Set",
        "Blender",
        "Toaster",
        "Cutting Board",
        "Kettle",
    ],
    &[
        "Yoga Mat",
        "Tent",
        "Water Bottle",
        "Bicycle Helmet",
        "Running Shoes",
        "Backpack",
        "Dumbbells",
    ],
    &[
        "Face Cream",
        "Shampoo",
        "Lip Balm",
        "Perfume",
        "Hair Dryer",
        "Sunscreen",
    ],
    &[
        "Puzzle",
        "Board Game",
        "Building Blocks",
        "Plush Bear",
        "Toy Car",
        "Card Game",
    ],
    &[
        "Olive Oil",
        "Dark Chocolate",
        "Green Tea",
        "Coffee Beans",
        "Pasta",
        "Honey",
        "Granola",
    ],
];

const VARIANTS: [&str; 8] = [
    "Black",
    "Large",
    "2-Pack",
    "Blue",
    "Organic",
    "Family Size",
    "Gift Edition",
    "Refurbished",
];

const NICKNAMES: [&str; 6] = [
    "Midnight", "Explorer", "Sunrise", "Classic", "Thunder", "Velvet",
];

/// Seed of the catalogue: fixed, so product ids mean the same thing in every run.
const CATALOGUE_SEED: u64 = 0x00C0_FFEE_CA7A_1060;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: String,
    pub name: String,
    pub category: &'static str,
    pub price: Price,
    /// `product_id,product_name,product_category,price` exactly as `csv::Writer` writes these
    /// four fields (quoted where needed), without a terminator.
    pub csv: Box<[u8]>,
}

/// The `i`-th product (0-based; its id is `prod_{i+1:04}`). Depends on nothing but `i`.
pub fn product(i: u32) -> Product {
    let mut rng = ChaCha8Rng::seed_from_u64(
        CATALOGUE_SEED ^ u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    let cat = rng.random_range(0..CATEGORIES.len() as u32) as usize;
    let (category, lo, hi) = CATEGORIES[cat];
    let brand = BRANDS[rng.random_range(0..BRANDS.len() as u32) as usize];
    let adj = ADJECTIVES[rng.random_range(0..ADJECTIVES.len() as u32) as usize];
    let nouns = NOUNS[cat];
    let noun = nouns[rng.random_range(0..nouns.len() as u32) as usize];
    let style: f64 = rng.random();
    let name = if style < 0.15 {
        // A comma: quoting is exercised.
        let variant = VARIANTS[rng.random_range(0..VARIANTS.len() as u32) as usize];
        format!("{brand} {adj} {noun}, {variant}")
    } else if style < 0.22 {
        // Double quotes inside the name.
        let nick = NICKNAMES[rng.random_range(0..NICKNAMES.len() as u32) as usize];
        format!("{brand} {noun} \"{nick}\" Edition")
    } else if style < 0.25 && cat == 0 {
        // An inch mark and a comma.
        let inches = rng.random_range(13..=34u32);
        format!("{brand} {inches}\" {noun}, {adj}")
    } else {
        format!("{brand} {adj} {noun}")
    };
    // Skewed towards the cheap end of the category's range (u³), usually ending in .99.
    // Only multiplications: IEEE-exact, so the same price on every platform (no ln/exp/powf).
    let u: f64 = rng.random();
    let raw = lo + ((hi - lo) as f64 * (u * u * u)) as i64;
    let cents = match rng.random_range(0..10u32) {
        0..=6 => (raw / 100) * 100 + 99,
        7 => (raw / 100) * 100,
        8 => (raw / 100) * 100 + 49,
        _ => raw,
    }
    .max(lo);
    let id = format!("prod_{:04}", u64::from(i) + 1);
    let price = Price(cents);
    let csv = render_fields(&[&id, &name, category, &price.to_string()]);
    Product {
        id,
        name,
        category,
        price,
        csv,
    }
}

/// Fields as `csv::Writer` writes them as one record, without the record terminator.
pub fn render_fields(fields: &[&str]) -> Box<[u8]> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    w.write_record(fields).expect("writing to memory");
    let mut v = w.into_inner().expect("writing to memory");
    while matches!(v.last(), Some(b'\n' | b'\r')) {
        v.pop();
    }
    v.into_boxed_slice()
}

/// All products of a run, and the popularity distribution over them.
pub struct Catalogue {
    products: Vec<Product>,
    /// Cumulative popularity by rank, ending at 1.0.
    cdf: Vec<f64>,
    /// Product index of each popularity rank (a seed-dependent shuffle).
    by_rank: Vec<u32>,
}

impl Catalogue {
    pub fn new(size: u32, rng: &mut impl Rng) -> Self {
        let products: Vec<Product> = (0..size).map(product).collect();
        let mut cdf = Vec::with_capacity(size as usize);
        let mut acc = 0.0;
        for rank in 1..=size {
            // Zipf with exponent 1: weight 1/rank (a division, exact on every platform).
            acc += 1.0 / f64::from(rank);
            cdf.push(acc);
        }
        for c in &mut cdf {
            *c /= acc;
        }
        // Fisher-Yates with u32 ranges: the same on every platform.
        let mut by_rank: Vec<u32> = (0..size).collect();
        for i in (1..by_rank.len()).rev() {
            let j = rng.random_range(0..=i as u32) as usize;
            by_rank.swap(i, j);
        }
        Catalogue {
            products,
            cdf,
            by_rank,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.products.len()
    }

    pub fn get(&self, index: u32) -> &Product {
        &self.products[index as usize]
    }

    /// A product index drawn by popularity.
    pub fn sample(&self, rng: &mut impl Rng) -> u32 {
        let u: f64 = rng.random();
        let rank = self
            .cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1);
        self.by_rank[rank]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_are_stable_and_valid() {
        for i in 0..2_000 {
            let p = product(i);
            assert_eq!(p, product(i));
            assert!(p.id.len() <= 50 && p.name.chars().count() <= 200);
            assert!(p.price.cents() > 0 && p.price.cents() < 10_000_000_000);
        }
        assert_eq!(product(41).id, "prod_0042");
        // Pinned: the catalogue is the same in every run, version and platform.
        let p = product(0);
        assert_eq!(
            (p.id.as_str(), p.name.as_str(), p.category, p.price.cents()),
            (
                "prod_0001",
                "Zenith Essential Cutting Board",
                "Home & Kitchen",
                1800
            )
        );
        let names: Vec<String> = (0..500).map(|i| product(i).name).collect();
        assert!(names.iter().any(|n| n.contains(',')));
        assert!(names.iter().any(|n| n.contains('"')));
        let cats: std::collections::HashSet<&str> = (0..500).map(|i| product(i).category).collect();
        assert_eq!(cats.len(), 8);
    }

    #[test]
    fn popularity_is_skewed() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let cat = Catalogue::new(200, &mut rng);
        let mut counts = vec![0u32; cat.len()];
        for _ in 0..100_000 {
            counts[cat.sample(&mut rng) as usize] += 1;
        }
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let top10: u32 = counts[..10].iter().sum();
        assert!(
            top10 > 40_000,
            "top 10 products got {top10} of 100000 views"
        );
        assert!(counts[199] < 500);
    }

    #[test]
    fn single_product_catalogue() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let cat = Catalogue::new(1, &mut rng);
        assert_eq!(cat.sample(&mut rng), 0);
    }
}
