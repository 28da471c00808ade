r"""Regression corpus for the math verifier: (completion, gold, expected score).

Shared by tests/rl_verifiers/test_verify_math.py and the accuracy benchmark. Each line is a case a
reward must get right; the "false positive" block holds math-verify's known wrong matches.
"""

R = "<think>\nLet me work through this carefully. First, ... so that is my plan.\n</think>\n\n"

CORPUS: list[tuple[str, str, float]] = [
    # plain numbers, fractions, decimals
    (R + r"The answer is $\boxed{42}$.", "42", 1.0),
    (R + r"The answer is $\boxed{41}$.", "42", 0.0),
    (R + r"So $\boxed{\frac{1}{2}}$", "0.5", 1.0),
    (R + r"So $\boxed{\dfrac12}$", "1/2", 1.0),
    (R + r"So $\boxed{0.5}$", r"\frac{1}{2}", 1.0),
    (R + r"So $\boxed{0.25}$", r"\frac{1}{2}", 0.0),
    (R + r"$\boxed{-3}$", "-3", 1.0),
    (R + r"$\boxed{3}$", "-3", 0.0),
    (R + r"$\boxed{1{,}000}$", "1000", 1.0),
    (R + r"$\boxed{100.0}$", "100", 1.0),
    (R + r"$\boxed{10^6}$", "1000000", 1.0),
    # percentages
    (R + r"$\boxed{50\%}$", "50", 1.0),
    (R + r"$\boxed{50\%}$", "0.5", 1.0),
    (R + r"$\boxed{40\%}$", "50", 0.0),
    # expressions
    (R + r"$\boxed{(x+1)^2}$", "x^2+2x+1", 1.0),
    (R + r"$\boxed{(x-1)^2}$", "x^2+2x+1", 0.0),
    (R + r"$\boxed{\frac{\sqrt{2}}{2}}$", r"\frac{1}{\sqrt{2}}", 1.0),
    (R + r"$\boxed{2\sqrt{3}}$", r"\sqrt{12}", 1.0),
    (R + r"$\boxed{\sqrt{3}}$", r"\sqrt{12}", 0.0),
    (R + r"$\boxed{\pi}$", r"\pi", 1.0),
    (R + r"$\boxed{1-\frac{1}{e}}$", r"1-\frac{1}{e}", 1.0),
    # equations vs values
    (R + r"$\boxed{x=2}$", "2", 1.0),
    (R + r"$\boxed{x = 3}$", "2", 0.0),
    # intervals: open vs closed matters
    (R + r"$\boxed{[1, 2)}$", "[1,2)", 1.0),
    (R + r"$\boxed{[1, 2]}$", "[1,2)", 0.0),
    (R + r"$\boxed{(1, 2)}$", "[1,2]", 0.0),
    (R + r"$\boxed{(-\infty, 3]}$", r"(-\infty,3]", 1.0),
    # sets and multiple answers, order-free
    (R + r"$\boxed{\{2, 1\}}$", r"\{1,2\}", 1.0),
    (R + r"$\boxed{3, 1, 2}$", "1, 2, 3", 1.0),
    (R + r"$\boxed{1, 2}$", "1, 2, 3", 0.0),
    (R + r"The solutions are $\boxed{2}$ and $\boxed{-2}$.", "2, -2", 1.0),
    # matrices
    (
        R + r"$\boxed{\begin{pmatrix}1&2\\3&4\end{pmatrix}}$",
        r"\begin{pmatrix}1&2\\3&4\end{pmatrix}",
        1.0,
    ),
    (
        R + r"$\boxed{\begin{pmatrix}1&2\\4&3\end{pmatrix}}$",
        r"\begin{pmatrix}1&2\\3&4\end{pmatrix}",
        0.0,
    ),
    # units and text wrappers
    (R + r"$\boxed{5\text{ cm}}$", "5", 1.0),
    (R + r"$\boxed{12 \mbox{ meters}}$", "12", 1.0),
    (R + r"$\boxed{\text{(B)}}$", "B", 1.0),
    (R + r"$\boxed{\textbf{(C)}}$", "B", 0.0),
    (R + r"$\boxed{\text{Monday}}$", r"\text{Monday}", 1.0),
    (R + r"$\boxed{\$5}$", "5", 1.0),
    (R + r"$\boxed{30^\circ}$", "30", 1.0),
    (R + r"$\boxed{12\,\mathrm{cm}^2}$", "12", 1.0),
    (R + r"$\boxed{\mathrm{(D)}}$", "D", 1.0),
    (R + r"$\boxed{(A)}$", "B", 0.0),
    (R + r"$\boxed{3.5\%}$", "0.035", 1.0),
    (R + r"$\boxed{2 \text{ and } 3}$", "2, 3", 1.0),
    (R + r"$\boxed{x \in [1,2]}$", "[1,2]", 1.0),
    # ordered pairs keep their order; signs matter
    (R + r"$\boxed{(2,1)}$", "(1,2)", 0.0),
    (R + r"$\boxed{x=1, y=2}$", "(1,2)", 1.0),
    (R + r"$\boxed{-\infty}$", r"\infty", 0.0),
    (R + r"$\boxed{\sqrt[3]{2}}$", "2^{1/3}", 1.0),
    (R + r"$\boxed{f(x)=x^2}$", "x^2", 1.0),
    # known false positives of plain math-verify (6-decimal rounding)
    (R + r"$\boxed{\frac{1}{2006!}}$", r"\frac{1}{2004!}", 0.0),
    (R + r"$\boxed{\frac{1}{2004!}}$", r"\frac{1}{2004!}", 1.0),
    (R + r"$\boxed{1+\frac{1}{e}}$", r"1-\frac{1}{e}", 0.0),
    (R + r"$\boxed{2\cdot 10^{-20}}$", r"10^{-20}", 0.0),
    (R + r"$\boxed{0.0000001}$", "0.0000002", 0.0),
    (R + r"$\boxed{1000000.4}$", "1000000", 0.0),
    # hedging and answer placement
    (R + r"It is $\boxed{3}$ or $\boxed{7}$.", "3", 0.0),
    (R + r"It is $\boxed{3}$ or $\boxed{7}$.", "7", 0.0),
    (R + r"$\boxed{3}$. Double-checking: yes, $\boxed{3}$.", "3", 1.0),
    (r"<think>maybe \boxed{7}? no...</think> The answer is $\boxed{3}$.", "3", 1.0),
    (r"<think>it must be \boxed{3}</think> I am not sure.", "3", 0.0),  # only reasoning had it
    (r"<think>still thinking about \boxed{3}", "3", 0.0),  # cut off inside the reasoning
    (
        r"<think>x</think> The final answer is $\frac{3}{4}$.",
        "0.75",
        1.0,
    ),  # no box: "final answer is"
    (r"<think>x</think> Answer: 12", "12", 1.0),
    (r"<think>x</think>", "12", 0.0),  # empty answer
    (r"The answer is \boxed{5}", "5", 1.0),  # no think tags at all
    (r"<think>x</think> \boxed{\boxed{5}}", "5", 1.0),
    (r"<think>x</think> \boxed{5", "5", 0.0),  # unclosed box, no fallback line
]
