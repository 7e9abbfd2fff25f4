"""The range of every number a training run accepts, in one place.

`TrainConfig.validate` enforces them and `mnistlab train --help` quotes them, so this module
imports nothing (the command's help must not wait for torch). Each bound says why.
"""

MAX_EPOCHS = 1_000  # ~1 s each on a laptop CPU: more is a typo, not a plan
# Test evaluations in one run, each a row of metrics.json (~300 bytes): 1,000 epochs of 100 steps evaluated every
# step, or 106 full MNIST epochs at the default batch; metrics.json's size cap is derived from it (records.py).
MAX_EVALUATIONS = 100_000
MAX_BATCH_SIZE = 65_536  # larger than the whole training set; a 65,536 × 784 float32 batch is already 205 MB
MAX_TRAIN_LIMIT = 10_000_000  # ten million 28×28 images are 7.8 GB of pixels
MAX_HIDDEN = 16_384  # 784 × 16,384 weights: 13M parameters, 200 MB with Adam's state
MAX_LR = 10.0  # Adam steps by about lr per weight per step: beyond 10 nothing converges
MIN_LR = 1e-12  # a step smaller than float32's spacing near any trained weight moves nothing (and 1e-320 is subnormal)
SEED_MAX = 2**64 - 1  # torch.manual_seed takes 0 … 2**64 - 1
MEAN_RANGE = (0.0, 1.0)  # a mean of pixels on the 0-1 scale
STD_RANGE = (1e-3, 100.0)  # keeps (x - mean) / std within ±1,000 for pixels x in [0, 1], finite in float32
IMAGE_SIZE = 28  # every dataset mnistlab knows has 28×28 images (here, not in data.py, which needs torch)
NUM_CLASSES = 10  # every dataset mnistlab knows has ten classes; a model's output layer has this many
CLASS_NAME_MAX = 40  # a class name is a label in a figure ("T-shirt/top"), not a paragraph
MAX_WEIGHT_DECAY = 10.0  # decoupled decay shrinks each weight by lr × decay per step; common values are 0-0.1
MAX_OUTLIER_EXPOSURE = 10.0  # weight of the "not a digit" loss: past a few, the digits' own loss is drowned
MAX_REGULARISATION = 10.0  # augment strength and elastic pixels: at 10 a digit is warped past recognition
MAX_EVAL_EVERY = 1_000_000_000  # steps between evaluations: more than any run takes (then: once, at the end)
MAX_WIDTH = 256  # channels of a cnn's first layer: at 256 the cnn holds 9M weights; more is refused unbuilt
MAX_GRID_CELLS = 400  # digits in one figure: a 20×20 grid is already a 3,000-pixel figure
MAX_PORT = 65_535  # the largest TCP port
MAX_UPLOAD_MB = 1024.0  # `serve --max-upload-mb`: a request body larger than 1 GiB is no drawing
FINETUNE_STEPS = 100  # `mnistlab finetune`'s default schedule, whatever the number of images: its cost stays put
MAX_MIX = 64  # `finetune --mix`: dataset images per image of the person's; at 64 the person's are 1.5% of a batch
MAX_HOLDOUT = 0.9  # `finetune --holdout`: at least a tenth of the person's images is left to train on
# Held-out training images a run calibrates its confidence on: more than the training set is a typo.
MAX_CALIBRATION_SIZE = MAX_TRAIN_LIMIT
MIN_CALIBRATION_IMAGES = 100  # fewer held-out images fit a temperature to noise: the run is left uncalibrated
# A fitted temperature: outside it the model would be all but uniform (T ≫ 1) or all but one-hot (T ≪ 1), which
# no held-out set of digits justifies; a record from outside with another value is refused.
TEMPERATURE_RANGE = (0.05, 20.0)
