# Simulate a two-level Bernoulli data set with one scalar random intercept, for the adaptive
# Gauss-Hermite (nAGQ > 1) reference fits; fixed seed.
#
#   Rscript data/simulate_bernoulli_agq.R     (from the repository root; base R only)
#
#   logit P(y = 1) = b0 + b1 * x + u_g,   u_g ~ N(0, sd_g^2)
#
# 40 clusters g (numbered 1-40) with 15 observations each (600 rows); x ~ N(0, 1) per observation,
# written rounded to 6 decimals (y is drawn from the rounded x). Writes data/sim_bernoulli_agq.csv
# (columns y, x, g). Truth: b0 = -0.5, b1 = 1, sd_g = 1.5 (a large SD, where Laplace and AGQ
# differ visibly).
set.seed(20250610)
clusters <- 40L
per <- 15L
b0 <- -0.5
b1 <- 1
sd_g <- 1.5
u <- rnorm(clusters, 0, sd_g)
g <- rep(seq_len(clusters), each = per)
x <- round(rnorm(clusters * per), 6)
y <- rbinom(clusters * per, 1, plogis(b0 + b1 * x + u[g]))
write.csv(data.frame(y = y, x = x, g = g), "data/sim_bernoulli_agq.csv", row.names = FALSE)
