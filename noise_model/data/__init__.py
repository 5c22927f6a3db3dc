"""The noisy-label model's data: the preparation of CIFAR-10, Clothing1M and the digits,
synthetic noise, the input pipelines."""
