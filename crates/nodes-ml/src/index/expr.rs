//! Band-math expressions (`expr = { RATIO = "B08 / B04" }`), parsed once with evalexpr.
//!
//! # Evaluation strategy (the trade-off)
//!
//! evalexpr interprets a tree per call and looks variables up by name in a hash map: about a
//! microsecond per pixel, i.e. 10 s for 10 M pixels and one small expression. So the tree that
//! [`evalexpr::build_operator_tree`] returns once is *compiled* into a small arithmetic AST
//! (`Expr`) that is evaluated a block of pixels at a time, column-wise over f64 buffers (a few
//! nanoseconds per pixel and operation, in parallel over blocks). Every number is a float in the
//! compiled form, so `1/2` is `0.5`.
//!
//! Compiled: `+ - * / % ^`, unary minus, parentheses, numeric constants, band variables, and the
//! functions `sqrt abs ln log2 log10 exp floor ceil round sin cos tan asin acos atan` (also under
//! `math::`), `min max pow atan2 hypot` (two arguments). `min`/`max` propagate NaN.
//!
//! Anything else (comparisons, `if`, booleans, chains) falls back to evalexpr's interpreter, per
//! pixel, with the precompiled tree and one context per block whose variables are overwritten in
//! place: correct but about 100x slower. Integer constants are turned into floats first so that
//! both paths agree on `1/2`.

use evalexpr::{
    build_operator_tree, ContextWithMutableVariables, DefaultNumericTypes, HashMapContext,
    Node as Tree, Operator, Value as EValue,
};

use crate::common::finite_or_nan;

/// A parsed band-math expression.
#[derive(Debug, Clone)]
pub struct BandExpr {
    /// The output band's name.
    pub name: String,
    /// The expression as written.
    pub source: String,
    /// The variables it reads (band names), in order of first use; column `i` of
    /// [`BandExpr::eval_block`] is `vars[i]`.
    pub vars: Vec<String>,
    plan: Plan,
}

#[derive(Debug, Clone)]
enum Plan {
    Compiled(Expr),
    Interpreted(Box<Tree<DefaultNumericTypes>>),
}

/// A compiled arithmetic expression over columns.
#[derive(Debug, Clone)]
enum Expr {
    Const(f64),
    Var(usize),
    Neg(Box<Expr>),
    Bin(fn(f64, f64) -> f64, Box<Expr>, Box<Expr>),
    Call1(fn(f64) -> f64, Box<Expr>),
}

fn nan_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

fn function1(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name.strip_prefix("math::").unwrap_or(name) {
        "sqrt" => f64::sqrt,
        "abs" => f64::abs,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "exp" => f64::exp,
        "floor" => f64::floor,
        "ceil" => f64::ceil,
        "round" => f64::round,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        _ => return None,
    })
}

fn function2(name: &str) -> Option<fn(f64, f64) -> f64> {
    Some(match name.strip_prefix("math::").unwrap_or(name) {
        "min" => nan_min,
        "max" => nan_max,
        "pow" => f64::powf,
        "atan2" => f64::atan2,
        "hypot" => f64::hypot,
        _ => return None,
    })
}

/// The arguments of a function call: `f(a, b)` parses as a function node over a (root node
/// over a) tuple.
fn call_args(node: &Tree<DefaultNumericTypes>) -> Vec<&Tree<DefaultNumericTypes>> {
    match (node.operator(), node.children()) {
        (Operator::RootNode, [only]) => call_args(only),
        (Operator::Tuple, children) => children.iter().collect(),
        _ => vec![node],
    }
}

fn compile(node: &Tree<DefaultNumericTypes>, vars: &[String]) -> Option<Expr> {
    let c = node.children();
    let bin = |f: fn(f64, f64) -> f64| -> Option<Expr> {
        match c {
            [a, b] => Some(Expr::Bin(
                f,
                Box::new(compile(a, vars)?),
                Box::new(compile(b, vars)?),
            )),
            _ => None,
        }
    };
    match node.operator() {
        Operator::RootNode => match c {
            [only] => compile(only, vars),
            _ => None,
        },
        Operator::Add => bin(|a, b| a + b),
        Operator::Sub => bin(|a, b| a - b),
        Operator::Mul => bin(|a, b| a * b),
        Operator::Div => bin(|a, b| a / b),
        Operator::Mod => bin(|a, b| a % b),
        Operator::Exp => bin(f64::powf),
        Operator::Neg => match c {
            [a] => Some(Expr::Neg(Box::new(compile(a, vars)?))),
            _ => None,
        },
        Operator::Const {
            value: EValue::Float(f),
        } => Some(Expr::Const(*f)),
        Operator::Const {
            value: EValue::Int(i),
        } => Some(Expr::Const(*i as f64)),
        Operator::VariableIdentifierRead { identifier } => {
            vars.iter().position(|v| v == identifier).map(Expr::Var)
        }
        Operator::FunctionIdentifier { identifier } => {
            let args = match c {
                [arg] => call_args(arg),
                _ => return None,
            };
            match args.as_slice() {
                [a] => Some(Expr::Call1(
                    function1(identifier)?,
                    Box::new(compile(a, vars)?),
                )),
                [a, b] => Some(Expr::Bin(
                    function2(identifier)?,
                    Box::new(compile(a, vars)?),
                    Box::new(compile(b, vars)?),
                )),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Turns integer constants into floats, so that the interpreter divides like the compiled form.
fn ints_to_floats(node: &mut Tree<DefaultNumericTypes>) {
    if let Operator::Const {
        value: EValue::Int(i),
    } = node.operator()
    {
        let f = *i as f64;
        *node.operator_mut() = Operator::Const {
            value: EValue::Float(f),
        };
    }
    for child in node.children_mut() {
        ints_to_floats(child);
    }
}

impl Expr {
    /// Evaluates over a block: `cols[i]` holds variable `i`, `out` has the block's length.
    fn eval(&self, cols: &[&[f32]], out: &mut [f64]) {
        match self {
            Expr::Const(c) => out.fill(*c),
            Expr::Var(i) => {
                for (o, &v) in out.iter_mut().zip(cols[*i]) {
                    *o = v as f64;
                }
            }
            Expr::Neg(a) => {
                a.eval(cols, out);
                out.iter_mut().for_each(|o| *o = -*o);
            }
            Expr::Call1(f, a) => {
                a.eval(cols, out);
                out.iter_mut().for_each(|o| *o = f(*o));
            }
            Expr::Bin(f, a, b) => {
                a.eval(cols, out);
                if let Expr::Const(c) = **b {
                    out.iter_mut().for_each(|o| *o = f(*o, c));
                } else {
                    let mut rhs = vec![0.0; out.len()];
                    b.eval(cols, &mut rhs);
                    for (o, r) in out.iter_mut().zip(rhs) {
                        *o = f(*o, r);
                    }
                }
            }
        }
    }
}

impl BandExpr {
    /// Parses `source` once.
    ///
    /// # Errors
    /// evalexpr's message when the expression does not parse.
    pub fn parse(name: &str, source: &str) -> Result<Self, String> {
        let mut tree =
            build_operator_tree::<DefaultNumericTypes>(source).map_err(|e| e.to_string())?;
        let mut vars: Vec<String> = Vec::new();
        for v in tree.iter_read_variable_identifiers() {
            if !vars.iter().any(|x| x == v) {
                vars.push(v.to_string());
            }
        }
        let plan = match compile(&tree, &vars) {
            Some(e) => Plan::Compiled(e),
            None => {
                ints_to_floats(&mut tree);
                Plan::Interpreted(Box::new(tree))
            }
        };
        let e = BandExpr {
            name: name.into(),
            source: source.into(),
            vars,
            plan,
        };
        // A dry run on ones catches what parses but cannot evaluate (`nir -`, a string result).
        if !e.is_compiled() {
            let ones = vec![1.0f32; e.vars.len()];
            let cols: Vec<&[f32]> = ones.chunks(1).collect();
            e.eval_block(&cols, &mut [0.0])?;
        }
        Ok(e)
    }

    /// True when the fast compiled form is used (see the module docs).
    pub fn is_compiled(&self) -> bool {
        matches!(self.plan, Plan::Compiled(_))
    }

    /// Evaluates a block of pixels: `cols[i]` holds band `vars[i]`; non-finite results become NaN.
    ///
    /// # Errors
    /// The interpreter's message when a pixel's value is not a number (e.g. a comparison).
    pub fn eval_block(&self, cols: &[&[f32]], out: &mut [f32]) -> Result<(), String> {
        match &self.plan {
            Plan::Compiled(e) => {
                let mut buf = vec![0.0; out.len()];
                e.eval(cols, &mut buf);
                for (o, v) in out.iter_mut().zip(buf) {
                    *o = finite_or_nan(v);
                }
                Ok(())
            }
            Plan::Interpreted(tree) => {
                let mut ctx = HashMapContext::<DefaultNumericTypes>::new();
                for (j, o) in out.iter_mut().enumerate() {
                    for (var, col) in self.vars.iter().zip(cols) {
                        ctx.set_value(var.clone(), EValue::Float(col[j] as f64))
                            .map_err(|e| e.to_string())?;
                    }
                    let v = match tree.eval_with_context(&ctx).map_err(|e| e.to_string())? {
                        EValue::Float(f) => f,
                        EValue::Int(i) => i as f64,
                        EValue::Boolean(b) => f64::from(u8::from(b)),
                        other => return Err(format!("evaluates to {other:?}, not a number")),
                    };
                    *o = finite_or_nan(v);
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(src: &str, cols: &[&[f32]]) -> (Vec<f32>, bool) {
        let e = BandExpr::parse("x", src).unwrap();
        let mut out = vec![0.0; cols.first().map_or(1, |c| c.len())];
        e.eval_block(cols, &mut out).unwrap();
        (out, e.is_compiled())
    }

    #[test]
    fn compiles_arithmetic_and_functions() {
        let a = [0.5f32, 0.2, 0.0, f32::NAN];
        let b = [0.1f32, 0.2, 0.0, 1.0];
        let e = BandExpr::parse("x", "(B08 - B04) / (B08 + B04)").unwrap();
        assert_eq!(e.vars, ["B08", "B04"]);
        let (out, compiled) = eval("(B08 - B04) / (B08 + B04)", &[&a, &b]);
        assert!(compiled);
        assert!((out[0] - 0.6666667).abs() < 1e-6);
        assert_eq!(out[1], 0.0);
        assert!(
            out[2].is_nan() && out[3].is_nan(),
            "0/0 and NaN input give NaN"
        );
        let (out, compiled) = eval(
            "math::sqrt(B08) + max(B08, B04) - min(1, 2) + 2^3 + -B04 + 1/2 + 7 % 4",
            &[&a, &b],
        );
        assert!(compiled);
        let expect = 0.5f64.sqrt() + 0.5 - 1.0 + 8.0 - 0.1 + 0.5 + 3.0;
        assert!(
            (out[0] as f64 - expect).abs() < 1e-5,
            "{} vs {expect}",
            out[0]
        );
        assert!(out[3].is_nan(), "max propagates NaN");
    }

    #[test]
    fn falls_back_to_the_interpreter() {
        let a = [0.5f32, 0.2];
        let (out, compiled) = eval("if(nir > 0.3, 1, 1/2)", &[&a]);
        assert!(!compiled);
        assert_eq!(out, [1.0, 0.5], "integers are floats in both paths");
        let e = BandExpr::parse("x", "nir > 0.3").unwrap();
        let mut out = [0.0f32; 2];
        e.eval_block(&[&a], &mut out).unwrap();
        assert_eq!(out, [1.0, 0.0]);
        assert!(BandExpr::parse("x", "(nir -").is_err());
    }
}
