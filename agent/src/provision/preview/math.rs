//! A small metric-math evaluator for when the data source does not evaluate expressions
//! itself (the emulator does not): numbers, query ids, `+ - * / ^`, comparisons, `AND`/`OR`,
//! parentheses and `IF(c, a, b)`, `ABS(x)`, `FILL(x, v)`. Series combine on their common
//! timestamps, as CloudWatch does. Anything else is an error naming what is not supported.

use std::collections::BTreeMap;

/// A series: Unix seconds → value.
pub(crate) type Points = BTreeMap<i64, f64>;

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Scalar(f64),
    Series(Points),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(f64),
    Name(String),
    Op(String),
    Open,
    Close,
    Comma,
}

fn tokens(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() || c == '.' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let number: String = chars[start..i].iter().collect();
            out.push(Token::Number(
                number.parse().map_err(|_| format!("bad number {number}"))?,
            ));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Name(chars[start..i].iter().collect()));
        } else if c == '(' {
            out.push(Token::Open);
            i += 1;
        } else if c == ')' {
            out.push(Token::Close);
            i += 1;
        } else if c == ',' {
            out.push(Token::Comma);
            i += 1;
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let op = if [">=", "<=", "==", "!=", "&&", "||"].contains(&two.as_str()) {
                two
            } else if "+-*/^<>".contains(c) {
                c.to_string()
            } else {
                return Err(format!("unsupported character {c:?}"));
            };
            i += op.len();
            out.push(Token::Op(op));
        }
    }
    Ok(out)
}

struct Parser<'a> {
    tokens: Vec<Token>,
    at: usize,
    series: &'a BTreeMap<String, Points>,
}

fn precedence(op: &str) -> u8 {
    match op {
        "||" | "OR" => 1,
        "&&" | "AND" => 2,
        ">" | "<" | ">=" | "<=" | "==" | "!=" => 3,
        "+" | "-" => 4,
        "*" | "/" => 5,
        "^" => 6,
        _ => 0,
    }
}

impl Parser<'_> {
    fn peek_op(&self) -> Option<String> {
        match self.tokens.get(self.at) {
            Some(Token::Op(op)) => Some(op.clone()),
            Some(Token::Name(name)) if name == "AND" || name == "OR" => Some(name.clone()),
            _ => None,
        }
    }

    fn expression(&mut self, min: u8) -> Result<Value, String> {
        let mut left = self.unary()?;
        while let Some(op) = self.peek_op() {
            let level = precedence(&op);
            if level < min {
                break;
            }
            self.at += 1;
            // `^` is right-associative, the others left.
            let right = self.expression(if op == "^" { level } else { level + 1 })?;
            left = combine(&left, &right, &|a, b| binary(&op, a, b));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Value, String> {
        if self.tokens.get(self.at) == Some(&Token::Op("-".to_owned())) {
            self.at += 1;
            let value = self.unary()?;
            return Ok(map(&value, &|v| -v));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Value, String> {
        let token = self.tokens.get(self.at).cloned().ok_or("unexpected end")?;
        self.at += 1;
        match token {
            Token::Number(n) => Ok(Value::Scalar(n)),
            Token::Open => {
                let value = self.expression(1)?;
                self.expect(&Token::Close)?;
                Ok(value)
            }
            Token::Name(name) if self.tokens.get(self.at) == Some(&Token::Open) => {
                self.at += 1;
                let mut args = vec![self.expression(1)?];
                while self.tokens.get(self.at) == Some(&Token::Comma) {
                    self.at += 1;
                    args.push(self.expression(1)?);
                }
                self.expect(&Token::Close)?;
                function(&name, &args)
            }
            Token::Name(name) => self
                .series
                .get(&name)
                .map(|points| Value::Series(points.clone()))
                .ok_or_else(|| format!("no data for {name}")),
            other => Err(format!("unexpected {other:?}")),
        }
    }

    fn expect(&mut self, token: &Token) -> Result<(), String> {
        if self.tokens.get(self.at) == Some(token) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("expected {token:?}"))
        }
    }
}

fn binary(op: &str, a: f64, b: f64) -> f64 {
    let truth = |x: bool| if x { 1.0 } else { 0.0 };
    match op {
        "+" => a + b,
        "-" => a - b,
        "*" => a * b,
        "/" => a / b,
        "^" => a.powf(b),
        ">" => truth(a > b),
        "<" => truth(a < b),
        ">=" => truth(a >= b),
        "<=" => truth(a <= b),
        "==" => truth(a == b),
        "!=" => truth(a != b),
        "&&" | "AND" => truth(a != 0.0 && b != 0.0),
        _ => truth(a != 0.0 || b != 0.0),
    }
}

fn map(value: &Value, f: &dyn Fn(f64) -> f64) -> Value {
    match value {
        Value::Scalar(v) => Value::Scalar(f(*v)),
        Value::Series(points) => Value::Series(points.iter().map(|(t, v)| (*t, f(*v))).collect()),
    }
}

fn combine(a: &Value, b: &Value, f: &dyn Fn(f64, f64) -> f64) -> Value {
    match (a, b) {
        (Value::Scalar(x), Value::Scalar(y)) => Value::Scalar(f(*x, *y)),
        (Value::Series(points), Value::Scalar(y)) => {
            Value::Series(points.iter().map(|(t, x)| (*t, f(*x, *y))).collect())
        }
        (Value::Scalar(x), Value::Series(points)) => {
            Value::Series(points.iter().map(|(t, y)| (*t, f(*x, *y))).collect())
        }
        (Value::Series(left), Value::Series(right)) => Value::Series(
            left.iter()
                .filter_map(|(t, x)| right.get(t).map(|y| (*t, f(*x, *y))))
                .collect(),
        ),
    }
}

fn function(name: &str, args: &[Value]) -> Result<Value, String> {
    match (name.to_ascii_uppercase().as_str(), args) {
        ("IF", [condition, then, otherwise]) => {
            let Value::Series(points) = condition else {
                let Value::Scalar(c) = condition else {
                    unreachable!("a value is a scalar or a series")
                };
                return Ok(if *c != 0.0 {
                    then.clone()
                } else {
                    otherwise.clone()
                });
            };
            let pick = |value: &Value, t: i64| match value {
                Value::Scalar(v) => Some(*v),
                Value::Series(p) => p.get(&t).copied(),
            };
            Ok(Value::Series(
                points
                    .iter()
                    .filter_map(|(t, c)| {
                        pick(if *c != 0.0 { then } else { otherwise }, *t).map(|v| (*t, v))
                    })
                    .collect(),
            ))
        }
        ("ABS", [value]) => Ok(map(value, &f64::abs)),
        ("FILL", [value, Value::Scalar(_)]) => Ok(value.clone()),
        _ => Err(format!(
            "{name}() with {} arguments is not supported here",
            args.len()
        )),
    }
}

/// Evaluates `expression` over the series by query id; the result has points only where
/// the expression has a finite value.
pub(crate) fn evaluate(
    expression: &str,
    series: &BTreeMap<String, Points>,
) -> Result<Points, String> {
    let mut parser = Parser {
        tokens: tokens(expression)?,
        at: 0,
        series,
    };
    let value = parser.expression(1)?;
    if parser.at != parser.tokens.len() {
        return Err("unexpected trailing input".to_owned());
    }
    match value {
        Value::Series(points) => Ok(points.into_iter().filter(|(_, v)| v.is_finite()).collect()),
        Value::Scalar(_) => Err("a constant, not a series".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(values: &[(i64, f64)]) -> Points {
        values.iter().copied().collect()
    }

    #[test]
    fn the_5xx_rate_of_the_api_dashboard() {
        let mut series = BTreeMap::new();
        series.insert(
            "errors".to_owned(),
            points(&[(0, 1.0), (60, 0.0), (120, 0.0)]),
        );
        series.insert(
            "requests".to_owned(),
            points(&[(0, 4.0), (60, 10.0), (120, 0.0)]),
        );
        let rate = evaluate("IF(requests > 0, 100 * errors / requests, 0)", &series).unwrap();
        assert_eq!(rate, points(&[(0, 25.0), (60, 0.0), (120, 0.0)]));
    }

    #[test]
    fn precedence_and_unsupported_functions() {
        let mut series = BTreeMap::new();
        series.insert("a".to_owned(), points(&[(0, 2.0)]));
        assert_eq!(
            evaluate("1 + a * 3 ^ 2", &series).unwrap(),
            points(&[(0, 19.0)])
        );
        assert_eq!(evaluate("-a + 1", &series).unwrap(), points(&[(0, -1.0)]));
        assert!(
            evaluate("ANOMALY_DETECTION_BAND(a)", &series)
                .unwrap_err()
                .contains("not supported")
        );
        assert!(
            evaluate("b", &series)
                .unwrap_err()
                .contains("no data for b")
        );
    }
}
