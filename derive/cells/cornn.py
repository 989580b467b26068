"""Coupled oscillatory RNN: a discretised second-order ODE y'' = tanh(W y + W_z y' + V x + b) - γ y - ε y'.

    z_t = z_{t-1} + dt ⊙ (tanh(W y_{t-1} + W_z z_{t-1} + V x_t + b) - gamma ⊙ y_{t-1} - epsilon ⊙ z_{t-1})
    y_t = y_{t-1} + dt ⊙ z_t

Reference: Rusch & Mishra (2021), "Coupled oscillatory recurrent neural network (coRNN): an accurate and
(gradient) stable architecture for learning long time dependencies", eq. 3 (the IMEX scheme). Convention:
states (y, z), y the output; one bias b (the reference code's two biases summed); the time step dt and the
damping gamma and epsilon are named constants with the defaults of the paper's sequential-MNIST run, set per
model without regenerating: `CoRNN(input_size, hidden_size, dt=0.1)`.
"""

from derive.activations import tanh
from derive.spec import Cell

cell = Cell("cornn", class_name="CoRNN", doc=__doc__)
x = cell.input()
y, z = cell.state("y"), cell.state("z")
dt, gamma, epsilon = cell.constant("dt", 0.042), cell.constant("gamma", 2.7), cell.constant("epsilon", 4.7)
drive = cell.weight("W", y) + cell.weight("W_z", z) + cell.weight("V", x) + cell.bias("b")
z_new = cell.update(z, z + dt * (tanh(drive) - gamma * y - epsilon * z))
cell.update(y, y + dt * z_new)
