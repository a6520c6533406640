-- The Maru shop's sample database (step 5's sql_query tool): products, customers, orders.
-- Prices match the Winter 2026 price list in data/manuals/price-list-2026.pdf (won, VAT included).
-- data/shop.db is built from this file; tests check that the two agree.

CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    model TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    price_won INTEGER NOT NULL,
    stock INTEGER NOT NULL
);

CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    city TEXT NOT NULL,
    country TEXT NOT NULL,
    joined_on TEXT NOT NULL
);

CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    product_id INTEGER NOT NULL REFERENCES products(id),
    quantity INTEGER NOT NULL,
    total_won INTEGER NOT NULL,
    status TEXT NOT NULL,
    ordered_on TEXT NOT NULL
);

INSERT INTO products VALUES (1, 'AL-310', 'Aurora desk lamp', 'lighting', 89000, 42);
INSERT INTO products VALUES (2, 'AD-12A', 'Aurora adapter', 'lighting', 15000, 120);
INSERT INTO products VALUES (3, 'ML-8', 'Dal mood lamp', 'lighting', 39000, 0);
INSERT INTO products VALUES (4, 'BF-20', 'Breeze fan', 'air', 129000, 17);
INSERT INTO products VALUES (5, 'PK-3', 'Breeze plug kit', 'air', 7000, 85);
INSERT INTO products VALUES (6, 'RC-2', 'Breeze remote', 'air', 12000, 9);
INSERT INTO products VALUES (7, 'PS-5', 'Pebble speaker', 'audio', 69000, 64);
INSERT INTO products VALUES (8, 'KT-17', 'Haneul kettle', 'kitchen', 59000, 23);
INSERT INTO products VALUES (9, 'CH-30', 'USB-C charger', 'accessories', 24000, 150);

INSERT INTO customers VALUES (1, 'Kim Minji', 'Seoul', 'KR', '2024-03-11');
INSERT INTO customers VALUES (2, 'Lee Jisoo', 'Busan', 'KR', '2024-07-02');
INSERT INTO customers VALUES (3, 'Park Hyunwoo', 'Incheon', 'KR', '2025-01-19');
INSERT INTO customers VALUES (4, 'Choi Yuna', 'Daejeon', 'KR', '2025-05-30');
INSERT INTO customers VALUES (5, 'Emma Schulz', 'Berlin', 'DE', '2025-09-14');
INSERT INTO customers VALUES (6, 'Liam Carter', 'Toronto', 'CA', '2026-02-08');
INSERT INTO customers VALUES (7, 'Sato Haruka', 'Osaka', 'JP', '2026-06-21');
INSERT INTO customers VALUES (8, 'Jung Dohyun', 'Seoul', 'KR', '2026-10-03');

INSERT INTO orders VALUES (1, 1, 1, 1, 89000, 'delivered', '2026-09-02');
INSERT INTO orders VALUES (2, 1, 3, 2, 78000, 'delivered', '2026-09-02');
INSERT INTO orders VALUES (3, 2, 4, 1, 129000, 'delivered', '2026-09-15');
INSERT INTO orders VALUES (4, 3, 7, 1, 69000, 'returned', '2026-09-20');
INSERT INTO orders VALUES (5, 4, 8, 1, 59000, 'delivered', '2026-10-01');
INSERT INTO orders VALUES (6, 5, 7, 2, 138000, 'delivered', '2026-10-05');
INSERT INTO orders VALUES (7, 6, 4, 1, 129000, 'shipped', '2026-10-28');
INSERT INTO orders VALUES (8, 2, 9, 3, 72000, 'delivered', '2026-11-02');
INSERT INTO orders VALUES (9, 7, 1, 1, 89000, 'shipped', '2026-11-10');
INSERT INTO orders VALUES (10, 8, 8, 1, 59000, 'shipped', '2026-11-18');
INSERT INTO orders VALUES (11, 1, 9, 1, 24000, 'processing', '2026-11-25');
INSERT INTO orders VALUES (12, 3, 5, 2, 14000, 'processing', '2026-11-26');
INSERT INTO orders VALUES (13, 4, 2, 1, 15000, 'cancelled', '2026-11-26');
INSERT INTO orders VALUES (14, 8, 7, 1, 69000, 'processing', '2026-11-27');
