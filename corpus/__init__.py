"""The labeled demo/test corpus: a product that the demo, benches and tests build images from."""
