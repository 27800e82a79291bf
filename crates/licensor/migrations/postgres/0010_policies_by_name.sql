-- Surfaces that issue under a named floating policy (licensing/v1 types, core/v1 protocols)
-- look it up by product and name under the product's row lock.
CREATE INDEX policies_product_name ON policies(product_id, name);
