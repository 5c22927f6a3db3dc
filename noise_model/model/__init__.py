"""The noisy-label model's networks, its loss layer and the Caffe weight import."""
