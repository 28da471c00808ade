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
    # exact values that need simplifying (see rl_finetune/verifiers/exact.py): Euler's identity and
    # the imaginary unit (a lone `i` is the imaginary unit when it is the answer's only symbol)
    (R + r"$\boxed{e^{i\pi}+1}$", "0", 1.0),
    (R + r"$\boxed{e^{i\pi}}$", "-1", 1.0),
    (R + r"$\boxed{e^{\pi i}}$", "-1", 1.0),
    (R + r"$\boxed{i^2}$", "-1", 1.0),
    (R + r"$\boxed{(1+i)^2}$", "2i", 1.0),
    (R + r"$\boxed{|3+4i|}$", "5", 1.0),
    (R + r"$\boxed{e^{i\pi/3}}$", r"\frac12+\frac{\sqrt3}{2}i", 1.0),
    (R + r"$\boxed{x = e^{i\pi}}$", "-1", 1.0),
    (R + r"$\boxed{e^{i\pi}}$", "1", 0.0),
    (R + r"$\boxed{e^{i\pi}+1}$", "2", 0.0),
    (R + r"$\boxed{i^2}$", "1", 0.0),
    (R + r"$\boxed{ii}$", "-1", 0.0),  # a roman numeral, not i times i
    (R + r"$\boxed{e^{i\pi/3}}$", r"\frac12-\frac{\sqrt3}{2}i", 0.0),
    # trigonometric values; degrees count inside a trigonometric function only
    (R + r"$\boxed{\sin(\pi/6)}$", r"\frac12", 1.0),
    (R + r"$\boxed{\cos(\pi/4)}$", r"\frac{\sqrt2}{2}", 1.0),
    (R + r"$\boxed{\tan(\pi/3)}$", r"\sqrt{3}", 1.0),
    (R + r"$\boxed{\sin\pi}$", "0", 1.0),
    (R + r"$\boxed{\cot\frac\pi4}$", "1", 1.0),
    (R + r"$\boxed{\cos^2\frac{\pi}{8}-\sin^2\frac{\pi}{8}}$", r"\frac{\sqrt2}{2}", 1.0),
    (R + r"$\boxed{\sin 30^\circ}$", r"\frac12", 1.0),
    (R + r"$\boxed{\cos 15^{\circ}}$", r"\frac{\sqrt6+\sqrt2}{4}", 1.0),
    (R + r"$\boxed{\tan(75^\circ)}$", r"2+\sqrt3", 1.0),
    (R + r"$\boxed{\arcsin\frac12}$", r"\frac\pi6", 1.0),
    (R + r"$\boxed{(\sin\frac{\pi}{6}, e^{i\pi})}$", r"(\frac12, -1)", 1.0),
    (R + r"$\boxed{0.5}$", r"\sin 30^\circ", 1.0),
    (R + r"$\boxed{\sin(\pi/6)}$", r"\frac{\sqrt3}{2}", 0.0),
    (R + r"$\boxed{\sin 30^\circ}$", r"\frac{\sqrt3}{2}", 0.0),
    (R + r"$\boxed{\cos(\pi/5)}$", r"\frac{\sqrt5-1}{4}", 0.0),
    (R + r"$\boxed{\tan(\pi/3)}$", r"\sqrt{2}", 0.0),
    (R + r"$\boxed{0.866}$", r"\cos\frac{\pi}{6}", 0.0),  # rounded: wrong, as for any decimal
    # nested radicals and roots (an odd root of a negative number is the real root)
    (R + r"$\boxed{\sqrt{3+2\sqrt2}}$", r"1+\sqrt2", 1.0),
    (R + r"$\boxed{\sqrt{5+2\sqrt6}}$", r"\sqrt2+\sqrt3", 1.0),
    (R + r"$\boxed{\sqrt{7-4\sqrt3}}$", r"2-\sqrt3", 1.0),
    (R + r"$\boxed{\sqrt{3+2\sqrt2}-\sqrt2-1}$", "0", 1.0),
    (R + r"$\boxed{\sqrt[3]{2+\sqrt5}+\sqrt[3]{2-\sqrt5}}$", "1", 1.0),
    (R + r"$\boxed{\sqrt[3]{-8}}$", "-2", 1.0),
    (R + r"$\boxed{(1+\sqrt2)^2}$", r"3+2\sqrt2", 1.0),
    (R + r"$\boxed{\frac{2}{\sqrt3+1}}$", r"\sqrt3-1", 1.0),
    (R + r"$\boxed{\sqrt{3+2\sqrt2}}$", r"1+\sqrt3", 0.0),
    (R + r"$\boxed{\sqrt{5+2\sqrt6}}$", r"\sqrt2+\sqrt5", 0.0),
    (R + r"$\boxed{\sqrt[3]{-8}}$", "2", 0.0),
    (R + r"$\boxed{(1+\sqrt2)^2}$", r"3+\sqrt2", 0.0),
    (R + r"$\boxed{1+\sqrt2+10^{-50}}$", r"\sqrt{3+2\sqrt2}", 0.0),
    (R + r"$\boxed{\sqrt{3+2\sqrt2}-\sqrt2-1}$", r"10^{-70}", 0.0),
    # logarithms (`\log` alone is base 10, as math-verify reads it; `\lg` is base 10)
    (R + r"$\boxed{\log_2 8}$", "3", 1.0),
    (R + r"$\boxed{\ln(e^3)}$", "3", 1.0),
    (R + r"$\boxed{\frac{\ln 8}{\ln 2}}$", "3", 1.0),
    (R + r"$\boxed{\ln 8/\ln 2}$", "3", 1.0),
    (R + r"$\boxed{\log_2 3\cdot\log_3 8}$", "3", 1.0),
    (R + r"$\boxed{\log 100}$", "2", 1.0),
    (R + r"$\boxed{\lg 100}$", "2", 1.0),
    (R + r"$\boxed{\log_4 2}$", r"\frac12", 1.0),
    (R + r"$\boxed{2\ln 2}$", r"\ln 4", 1.0),
    (R + r"$\boxed{\log_2 8}$", "4", 0.0),
    (R + r"$\boxed{\frac{\ln 9}{\ln 3}}$", "3", 0.0),
    (R + r"$\boxed{\ln(e^3)}$", "e", 0.0),
    (R + r"$\boxed{\lg 100}$", "100", 0.0),
    (R + r"$\boxed{\ln 5}$", r"\ln 2+\ln 3", 0.0),
    (R + r"$\boxed{\ln 2+10^{-100}}$", r"\ln 2", 0.0),
    # powers, factorials, binomials
    (R + r"$\boxed{\binom{5}{2}}$", "10", 1.0),
    (R + r"$\boxed{2^{10}}$", "1024", 1.0),
    (R + r"$\boxed{\frac{5!}{3!}}$", "20", 1.0),
    (R + r"$\boxed{\binom{5}{2}}$", "20", 0.0),
    (R + r"$\boxed{2^{10}}$", "1000", 0.0),
    (R + r"$\boxed{0.333}$", r"\frac13", 0.0),
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
