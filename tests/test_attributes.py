"Hand-checked architectural attributes and the models' input checks (the notebooks hold the full tests)."
import numpy as np, pandas as pd, pytest, torch
from torch import nn
import torch.nn.functional as F
from potential.attributes.extract import ATTRIBUTES, arch_attributes
from potential.attributes.models import HealthClassifier, AttributeOLS

class TinyRes(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem,self.a,self.b = nn.Conv1d(1, 4, 3, padding=1),nn.Conv1d(4, 4, 3, padding=1),nn.Conv1d(4, 4, 1)
        self.pool,self.fc = nn.AvgPool1d(2),nn.Linear(32, 10)
    def forward(self, x):
        x = F.relu(self.stem(x))
        x = F.relu(x + self.b(torch.relu(self.a(x))))
        return self.fc(self.pool(x).flatten(1))

def test_residual_by_hand():
    a = arch_attributes(TinyRes(), (1, 16))
    assert list(a) == ATTRIBUTES
    assert a['net_depth_avg'] == 4          # paths of depth 5 (through the block) and 3 (skip)
    assert (a['avg_split_width'], a['avg_concat_width'], a['num_relu']) == (2, 2, 2)
    assert a['prop_conv_into_pool'] == 0 and a['prop_1x1_conv'] == pytest.approx(1/3)
    assert a['avg_ratio_features_to_depth'] == pytest.approx((4 + 2 + 4/3 + 5)/4)

def test_bad_shape_and_columns():
    with pytest.raises(ValueError, match='does not fit'): arch_attributes(TinyRes(), (1, 15))
    with pytest.raises(KeyError, match='num_relu'): HealthClassifier().fit(pd.DataFrame({'final_accuracy': [.5]}))
    df = pd.DataFrame(np.random.default_rng(0).normal(size=(8, 32)), columns=ATTRIBUTES).assign(final_accuracy=.5)
    with pytest.raises(ValueError, match='too few networks'): AttributeOLS().fit(df)
