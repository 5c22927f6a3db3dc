"""Title: Training on noisy labels with NoisyLabelLoss (Xiao et al., CVPR 2015)
Description: Put the noisy-label loss layer into your own Keras model and train it on your
own noisy and clean arrays.

## Introduction

Xiao et al. model a noisy label ỹ as the clean label y passed through a noise type z:
noise-free (ỹ = y), random (any other class) or confusing (drawn from a class-confusion
matrix C). A network gets two heads: the clean-label logits p(y|x) and the noise-type
logits p(z|x). `noise_model.model.layers.NoisyLabelLoss` turns both, the noisy label and C
into the loss whose gradients are the EM updates of the paper. A small set of samples
with clean labels trains the clean head directly, and estimates C.

This example uses scikit-learn's handwritten digits with 40% of the labels replaced by a
confusable class; it runs in seconds on a CPU.
"""

## Setup

import keras
import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits

from noise_model.data.noise import compute_matrix_c
from noise_model.model.layers import NoisyLabelLoss, masked_cross_entropy

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)

## Your data: many noisy labels, a few clean ones

digits = load_digits()
x = (digits.data / 16.0).astype("float32")
y_true = digits.target.astype("int64")
num_classes = 10
# Confusing noise: 40% of the labels become the "next" digit.
flip = rng.random(len(x)) < 0.4
y_noisy = np.where(flip, (y_true + 1) % num_classes, y_true)

order = rng.permutation(len(x))
clean_idx, noisy_idx, test_idx = order[:150], order[150:1400], order[1400:]
x_clean, y_clean, y_clean_noisy = x[clean_idx], y_true[clean_idx], y_noisy[clean_idx]
x_noisy, y_noisy_train = x[noisy_idx], y_noisy[noisy_idx]
x_test, y_test = x[test_idx], y_true[test_idx]

## The class-confusion matrix C from the clean samples' (clean, noisy) pairs

matrix_c = compute_matrix_c(y_clean, y_clean_noisy, num_classes)
# Each sample with a clean label also has a known noise type: 0 noise-free, 2 confusing.
z_clean = np.where(y_clean == y_clean_noisy, 0, 2).astype("int64")

## Your model: a shared trunk, a clean-label head and a noise-type head

inputs = keras.Input(shape=(64,))
hidden = keras.layers.Dense(64, activation="relu")(inputs)
clean_logits = keras.layers.Dense(num_classes, name="clean")(hidden)
ntype_logits = keras.layers.Dense(3, name="noise_type")(hidden)
model = keras.Model(inputs, [clean_logits, ntype_logits])

noisy_label_loss = NoisyLabelLoss(matrix_c)
optimizer = keras.optimizers.SGD(learning_rate=0.1, momentum=0.9)

## One training step: NoisyLabelLoss on a noisy batch, cross-entropy on a clean batch


@tf.function
def train_step(x_noisy_batch, noisy_labels, x_clean_batch, clean_labels, clean_types):
    with tf.GradientTape() as tape:
        clean_out, ntype_out = model(x_noisy_batch, training=True)
        loss = noisy_label_loss([clean_out, ntype_out, noisy_labels])
        clean_out2, ntype_out2 = model(x_clean_batch, training=True)
        loss += masked_cross_entropy(clean_labels, clean_out2)
        loss += masked_cross_entropy(clean_types, ntype_out2)
    gradients = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    return loss


## Train

batch = 64
for step in range(600):
    noisy_batch = rng.integers(0, len(x_noisy), batch)
    clean_batch = rng.integers(0, len(x_clean), batch // 2)
    loss = train_step(x_noisy[noisy_batch], y_noisy_train[noisy_batch], x_clean[clean_batch],
                      y_clean[clean_batch], z_clean[clean_batch])
    if step % 200 == 0:
        print("step %d: loss %.4f" % (step, float(loss)))

## Evaluate the clean head on true labels

clean_test, _ = model(x_test, training=False)
accuracy = float(np.mean(np.argmax(clean_test.numpy(), axis=1) == y_test))
print("test accuracy of the clean-label head: %.3f" % accuracy)

## A baseline: the same network trained on the noisy labels with plain cross-entropy

baseline = keras.Sequential([keras.Input(shape=(64,)), keras.layers.Dense(64, activation="relu"),
                             keras.layers.Dense(num_classes)])
baseline.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1, momentum=0.9),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
baseline.fit(np.concatenate([x_noisy, x_clean]), np.concatenate([y_noisy_train, y_clean]),
             batch_size=batch, epochs=30, verbose=0)
baseline_accuracy = float(np.mean(np.argmax(baseline.predict(x_test, verbose=0), axis=1) == y_test))
print("test accuracy of the baseline: %.3f" % baseline_accuracy)
